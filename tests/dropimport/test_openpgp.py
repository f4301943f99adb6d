"""GnuPG's verdicts, told from its status lines; keyrings that never outlive a call."""

import os
import time

import pytest

from dropimport import openpgp

SIGNER = {"fingerprint": "DD0299CB3CECDFA9B1EA6142A9AEF7946A4A733C", "public_key": ""}
DECRYPTED = ["ENC_TO CA3159B9A9A46A36 18 0", "BEGIN_DECRYPTION", "PLAINTEXT 62 0 c.csv"]
DONE = ["DECRYPTION_OKAY", "GOODMDC", "END_DECRYPTION"]


def status(*lines):
    return "".join(f"[GNUPG:] {line}\n" for line in lines)


def test_a_good_signature_by_the_signer_passes():
    good = ["NEWSIG", "GOODSIG 00134403DA61E272 c <c@x>",
            f"VALIDSIG E24B62CF10235CF217C28DA100134403DA61E272 2026-12-07 0 4 0 22 10 00 "
            f"{SIGNER['fingerprint']}"]
    assert openpgp.verdict(status(*DECRYPTED, *good, *DONE), 0, SIGNER) is None


@pytest.mark.parametrize("lines, reason", [
    (["BADSIG 00134403DA61E272 c <c@x>"], "bad signature (by key 0x00134403DA61E272)"),
    (["EXPKEYSIG 00134403DA61E272 c <c@x>", "VALIDSIG AAAA 2026 0 4 0 22 10 00 " + "B" * 40],
     "signed by key 0x00134403DA61E272, which is expired or revoked"),
    (["GOODSIG 00134403DA61E272 c <c@x>", "VALIDSIG AAAA 2026 0 4 0 22 10 00 " + "B" * 40],
     "signed by unknown key 0xAAAA"),
])
def test_a_signature_other_than_the_signers_good_one_is_refused(lines, reason):
    assert reason in openpgp.verdict(status(*DECRYPTED, *lines, *DONE), 0, SIGNER)


@pytest.mark.parametrize("lines", [[*DECRYPTED, "BADMDC", "DECRYPTION_FAILED"],
                                   [*DECRYPTED], ["ENC_TO CA3159B9A9A46A36 18 0", "NODATA 3"]])
def test_a_message_not_decrypted_to_its_end_is_refused_as_cut(lines):
    assert "cannot be decrypted to its end" in openpgp.verdict(status(*lines), 2, None)


def test_a_message_killed_midway_is_refused():
    assert "cannot be decrypted" in openpgp.verdict(status(*DECRYPTED, *DONE), -9, None)


def test_a_keyring_left_by_a_killed_process_is_removed_by_the_next_call(account_key):
    stale = openpgp._keyrings() / "dropimport-gpg-stale-test"
    stale.mkdir()
    (stale / "private-keys-v1.d").mkdir()
    old = time.time() - openpgp.STALE_SECONDS - 60
    os.utime(stale, (old, old))
    openpgp.read_public(account_key.public_key)
    assert not stale.exists()
