"""Config composition, overrides, user config dirs, and errors for typos and bad values."""
import pytest

from wanir.config import list_options, load_config
from wanir.errors import ConfigError


def test_defaults_compose():
    from wanir.resolve import resolve

    cfg = load_config()
    assert cfg.model.name == "wan2.1-t2v-14b"
    wl = resolve([]).build.workload
    assert (wl.width, wl.height, wl.frames, wl.steps) == (1280, 720, 81, 50)
    # 1280x720x81 -> latents (16, 21, 90, 160) -> 21·45·80 tokens
    assert (wl.latent_frames, wl.latent_height, wl.latent_width, wl.tokens) == (21, 90, 160, 21 * 45 * 80)
    assert cfg.dit.num_layers == 40 and cfg.text_encoder.num_layers == 24 and cfg.vae.z_dim == 16


def test_group_and_value_overrides():
    cfg = load_config(["model=wan2.1-t2v-1.3b", "workload.height=480", "workload.width=832", "workload.steps=30"])
    assert cfg.dit.num_attention_heads == 12 and cfg.dit.ffn_dim == 8960
    assert (cfg.workload.height, cfg.workload.width, cfg.workload.steps) == (480, 832, 30)


def test_component_swap_keeps_the_rest():
    cfg = load_config(["dit=wan2.1-t2v-1.3b"])
    assert cfg.dit.num_layers == 30 and cfg.model.name == "wan2.1-t2v-14b"


def test_mistyped_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'workload.heigth'; did you mean 'workload.height'"):
        load_config(["workload.heigth=480"])
    with pytest.raises(ConfigError, match=r"did you mean 'workload'"):
        load_config(["wrkload.height=480"])


def test_unknown_option_suggests_closest():
    with pytest.raises(ConfigError, match=r"no option 'wan2.1-t2v-13b' in group 'model'; did you mean"):
        load_config(["model=wan2.1-t2v-13b"])


@pytest.mark.parametrize("override,match", [
    ("workload.height=abc", "workload.height must be an integer"),
    ("workload.frames=0", "workload.frames must be an integer >= 1"),
    ("workload.guidance=maybe", "workload.guidance must be true or false"),
    ("precision.vae=fp12", "precision.vae must be one of"),
    ("workload.steps=-3", "workload.steps must be an integer >= 1"),
])
def test_bad_values_name_key_and_allowed(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config([override])


def test_sweep_syntax_is_rejected_outside_sweep():
    with pytest.raises(ConfigError, match="sweep"):
        load_config(["workload.height=480,720"])


def test_unparsable_override():
    with pytest.raises(ConfigError, match="cannot parse override"):
        load_config(["workload.height=[1,"])


def test_user_config_dir_adds_options(tmp_path):
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "tiny.yaml").write_text(
        "height: 64\nwidth: 64\nframes: 5\nsteps: 2\nguidance: false\nbatch: 1\ntext_len: 512\nvae_encode: false\n")
    cfg = load_config(["workload=tiny"], config_dir=tmp_path)
    assert (cfg.workload.height, cfg.workload.frames, cfg.workload.steps) == (64, 5, 2)
    assert "tiny" in list_options("workload", tmp_path)
    with pytest.raises(ConfigError, match="no such directory"):
        load_config([], config_dir=tmp_path / "missing")


def test_an_option_file_added_or_removed_later_is_seen(tmp_path):
    """The option listing is remembered per group folder state: a file added to (or removed
    from) a user's group folder after a first listing is listed (or refused) at once."""
    (tmp_path / "workload").mkdir()
    assert "later" not in list_options("workload", tmp_path)
    with pytest.raises(ConfigError, match="no option 'later'"):
        load_config(["workload=later"], config_dir=tmp_path)
    (tmp_path / "workload" / "later.yaml").write_text("height: 480\nwidth: 832\nframes: 17\n")
    assert "later" in list_options("workload", tmp_path)
    (tmp_path / "workload" / "later.yaml").unlink()
    assert "later" not in list_options("workload", tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("name: mine\n")
    assert "mine" in list_options("model", tmp_path)
