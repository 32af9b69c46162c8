"""The admin token check."""

from __future__ import annotations

from server.transport.admin_auth import TokenCheck


def test_only_the_exact_bearer_token_passes() -> None:
    check = TokenCheck("0123456789abcdef")
    assert check.allows((("authorization", "Bearer 0123456789abcdef"),))
    assert check.allows((("other", "x"), ("authorization", b"Bearer 0123456789abcdef")))
    for metadata in (None, (), (("authorization", "0123456789abcdef"),),
                     (("authorization", "Bearer 0123456789abcde"),),
                     (("authorization", "Bearer 0123456789abcdef "),),
                     (("authorization", "Bearer 0123456789abcdef"),
                      ("authorization", "Bearer 0123456789abcdef"))):  # fmt: skip
        assert not check.allows(metadata), metadata
