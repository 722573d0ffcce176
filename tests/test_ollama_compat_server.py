"""The Ollama-API-compatible test server, driven by the real ``ollama`` client (what stage 03 and 04 code uses)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import pytest
from fixtures_llm import SMOLLM2_OLLAMA_NAME, start_ollama_compat


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A compat server with no models (nothing is loaded: fast)."""
    with start_ollama_compat({}, tmp_path_factory.mktemp("blobs")) as srv:
        yield srv


def test_version_tags_and_unknown_model(empty_server) -> None:  # noqa: ANN001
    client = ollama.Client(empty_server.url)
    assert httpx.get(f"{empty_server.url}/api/version").json()["version"].endswith("compat")
    assert client.list().models == []
    with pytest.raises(ollama.ResponseError, match="not found, try pulling it first") as err:
        client.chat(model="qwen2.5:3b", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404


def test_pull_says_offline_streaming_or_not(empty_server) -> None:  # noqa: ANN001
    client = ollama.Client(empty_server.url)
    with pytest.raises(ollama.ResponseError, match="not available offline"):
        client.pull("qwen2.5vl:3b")
    with pytest.raises(ollama.ResponseError, match="not available offline"):
        list(client.pull("qwen2.5vl:3b", stream=True))


def test_blobs_check_their_digest_and_create_needs_them(empty_server, tmp_path: Path) -> None:  # noqa: ANN001
    client = ollama.Client(empty_server.url)
    blob = tmp_path / "x.bin"
    blob.write_bytes(b"not a model")
    digest = client.create_blob(blob)
    assert httpx.head(f"{empty_server.url}/api/blobs/{digest}").status_code == 200
    assert httpx.post(f"{empty_server.url}/api/blobs/sha256:{'0' * 64}", content=b"x").status_code == 400
    with pytest.raises(ollama.ResponseError, match="exactly one model .gguf"):
        client.create(model="bad", files={"x.bin": digest})
    with pytest.raises(ollama.ResponseError, match="blobs not uploaded"):
        client.create(model="bad", files={"m.gguf": f"sha256:{'1' * 64}"})
    with pytest.raises(ollama.ResponseError, match="adapters are not supported"):
        client.create(model="bad", from_="x", adapters={"a.gguf": digest})


def test_canned_models_answer_their_text_on_both_apis() -> None:
    reply = '{"action": "HOLD", "confidence": 0.5, "entry_price": 100.0}'
    with start_ollama_compat({}, canned={"chart:canned": reply}) as srv:
        client = ollama.Client(srv.url)
        assert client.show("chart:canned").capabilities == ["completion", "vision"]  # it takes images
        msg = {"role": "user", "content": "read this", "images": [b"\x89PNG fake bytes"]}
        assert client.chat(model="chart:canned", messages=[msg]).message.content == reply
        assert "".join(c.message.content for c in client.chat(model="chart:canned", messages=[msg],
                                                               stream=True)) == reply
        assert client.generate(model="chart:canned", prompt="x").response == reply
        models = httpx.get(f"{srv.url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["chart:canned"]
        body = {"model": "chart:canned", "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}}}
        out = httpx.post(f"{srv.url}/v1/chat/completions", json=body).json()
        assert out["choices"][0]["message"]["content"] == reply and out["object"] == "chat.completion"
        stream = httpx.post(f"{srv.url}/v1/chat/completions", json={**body, "stream": True})
        assert stream.status_code == 400 and "streaming is not supported" in stream.json()["error"]
        missing = httpx.post(f"{srv.url}/v1/chat/completions", json={**body, "model": "absent:1b"})
        assert missing.status_code == 404


@pytest.mark.slow
def test_create_generate_chat_copy_delete_with_real_inference(smollm2_gguf: Path, tmp_path: Path) -> None:
    with start_ollama_compat({}, tmp_path / "blobs") as srv:
        client = ollama.Client(srv.url)
        digest = client.create_blob(smollm2_gguf)
        client.create(model=SMOLLM2_OLLAMA_NAME, files={smollm2_gguf.name: digest}, system="Answer briefly.",
                      parameters={"temperature": 0.0})
        assert [m.model for m in client.list().models] == [SMOLLM2_OLLAMA_NAME]
        show = client.show(SMOLLM2_OLLAMA_NAME)
        assert show.capabilities == ["completion"] and "Answer briefly." in show.modelfile
        assert show.modelinfo["general.architecture"] == "llama"

        gen = client.generate(model=SMOLLM2_OLLAMA_NAME, prompt="Say hi.", options={"num_predict": 8})
        assert gen.done and gen.response.strip() and gen.eval_count <= 8
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        chat = client.chat(model=SMOLLM2_OLLAMA_NAME, messages=[{"role": "user", "content": "Is water wet? JSON."}],
                           format=schema, options={"num_predict": 16})
        assert isinstance(json.loads(chat.message.content)["ok"], bool)  # grammar-constrained to the schema
        body = {"model": SMOLLM2_OLLAMA_NAME, "messages": [{"role": "user", "content": "Is water wet? JSON."}],
                "max_tokens": 16, "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {
                    "name": "r", "schema": schema}}}
        out = httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=120).json()  # the OpenAI endpoint
        assert isinstance(json.loads(out["choices"][0]["message"]["content"])["ok"], bool)
        parts = list(client.chat(model=SMOLLM2_OLLAMA_NAME, messages=[{"role": "user", "content": "Count to 3."}],
                                 stream=True, options={"num_predict": 6}))
        assert parts[-1].done and not parts[0].done and "".join(p.message.content for p in parts).strip()
        assert [m.model for m in client.ps().models] == [SMOLLM2_OLLAMA_NAME]

        client.copy(SMOLLM2_OLLAMA_NAME, "alias")
        client.create(model="terse:1", from_="alias", system="One word only.")
        names = {m.model for m in client.list().models}
        assert names == {SMOLLM2_OLLAMA_NAME, "alias:latest", "terse:1"}
        assert "One word only." in client.show("terse:1").modelfile
        assert client.pull("alias").status == "success"  # already served: pulling is a no-op, like Ollama
        client.delete("alias")
        assert "alias:latest" not in {m.model for m in client.list().models}
        with pytest.raises(ollama.ResponseError, match="does not support images"):
            client.chat(model="terse:1", messages=[{"role": "user", "content": "x", "images": [b"\x89PNG"]}])
