import time

from airside.core import auth


def test_sign_and_verify_round_trip(tmp_path) -> None:
    pem, pub = auth.generate_keypair()
    (tmp_path / "k").write_bytes(pem)
    (tmp_path / "pub").write_text("# comment\n" + pub + "\n")
    key, keys = auth.load_private_key(tmp_path / "k"), auth.load_authorized_keys(tmp_path / "pub")
    header = auth.sign(key, "w1", "PUT", "/api/v1/workers/w1/heartbeat", b"{}")
    assert auth.verify(header, keys, "PUT", "/api/v1/workers/w1/heartbeat", b"{}") == "w1"
    # any change to method, path or body breaks the signature
    assert auth.verify(header, keys, "POST", "/api/v1/workers/w1/heartbeat", b"{}") is None
    assert auth.verify(header, keys, "PUT", "/api/v1/workers/w2/heartbeat", b"{}") is None
    assert auth.verify(header, keys, "PUT", "/api/v1/workers/w1/heartbeat", b"{ }") is None


def test_old_signatures_are_refused() -> None:
    pem, pub = auth.generate_keypair()
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem, None)
    keys = [key.public_key()]
    header = auth.sign(key, "w", "GET", "/x", b"", now=time.time() - auth.MAX_SKEW - 10)
    assert auth.verify(header, keys, "GET", "/x", b"") is None


def test_malformed_headers_are_refused() -> None:
    _, pub = auth.generate_keypair()
    for h in ["", "AirsideWorker", "AirsideWorker a:b", "AirsideWorker a:1:!!!", "Bearer x:1:abc"]:
        assert auth.verify(h, [], "GET", "/", b"") is None


def test_tokens_compare() -> None:
    assert auth.tokens_equal("abc", "abc")
    assert not auth.tokens_equal("abc", "abd")
    assert not auth.tokens_equal(None, None) and not auth.tokens_equal("", "")
