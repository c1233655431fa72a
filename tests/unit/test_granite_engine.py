"""What can be checked of the Granite engine without its weights or a GPU."""

import json
import logging

import pytest

from callscribe import engines
from callscribe.engines.granite import ModelDirError, check_model_dir, choose_attention


def _complete(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "auto_map": {"AutoConfig": "configuration_granite_speech_nar.Config",
                     "AutoModel": "modeling_granite_speech_nar.GraniteSpeechNarModel"}}))
    for f in ("configuration_granite_speech_nar.py", "modeling_granite_speech_nar.py", "tokenizer.json",
              "preprocessor_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (tmp_path / f).write_text("x")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    return tmp_path


def test_complete_folder_passes(tmp_path):
    assert check_model_dir(_complete(tmp_path)) == []


def test_missing_folder(tmp_path):
    assert check_model_dir(tmp_path / "nope") == [f"the folder itself ({tmp_path / 'nope'})"]


def test_empty_folder_names_everything(tmp_path):
    missing = check_model_dir(tmp_path)
    assert "config.json" in missing and "tokenizer.json" in missing and "preprocessor_config.json" in missing
    assert any(m.startswith("model.safetensors") for m in missing)


def test_missing_shard_and_remote_code_are_named(tmp_path):
    d = _complete(tmp_path)
    (d / "model-00002-of-00002.safetensors").unlink()
    (d / "modeling_granite_speech_nar.py").unlink()
    assert check_model_dir(d) == ["modeling_granite_speech_nar.py", "model-00002-of-00002.safetensors"]


def test_engine_refuses_an_incomplete_folder_with_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelDirError, match="missing: model.safetensors.*tokenizer.json.*99a4df9"):
        engines.create("granite-nar", path=tmp_path)


def test_attention_choice_and_loud_fallback(caplog):
    assert choose_attention("cuda", flash_available=True) == "flash_attention_2"
    with caplog.at_level(logging.WARNING):
        assert choose_attention("cuda", flash_available=False) == "sdpa"
    assert "flash-attn is not installed" in caplog.text
    assert choose_attention("cpu", flash_available=True) == "sdpa"
