"""How an upload may come packed: compressed (gzip, zip), encrypted (OpenPGP), or both.

A template for `contacts.csv` with `"compression": "auto"` also takes `contacts.csv.gz` and
`contacts.csv.zip`; with `"encryption": "openpgp"` it takes only encrypted forms,
`contacts.csv.pgp` (or `.gpg`, `.asc`) and `contacts.csv.gz.pgp`. The name says the packing:
the worker unpacks in that order (worker/read/unpack.py), the doors refuse what a template
does not take. Pure.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

#: Suffixes of the compressed forms, and how each is read.
COMPRESSIONS = {".gz": "gzip", ".zip": "zip"}
#: Suffixes of the OpenPGP-encrypted forms (binary or ASCII-armoured: the data tells).
ENCRYPTIONS = (".pgp", ".gpg", ".asc")


class Packing(NamedTuple):
    """What an upload's name says of it: the name of the file inside, and its wrappings."""

    inner: str  # contacts.csv
    compression: str | None  # gzip, zip, or None
    encrypted: bool

    @property
    def packed(self) -> bool:
        return self.encrypted or self.compression is not None


def _strip(name: str, suffixes: Any) -> tuple[str, str | None]:
    lowered = name.lower()
    for suffix in suffixes:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], suffix
    return name, None


def packing(name: str) -> Packing:
    """What the upload name `name` says: `contacts.csv.gz.pgp` is `contacts.csv`, gzip,
    encrypted; a name with no known suffix is itself, plain."""
    inner, encrypted = _strip(name, ENCRYPTIONS)
    inner, compressed = _strip(inner, COMPRESSIONS)
    return Packing(inner, COMPRESSIONS[compressed] if compressed else None, encrypted is not None)


def forms(name: str) -> list[str]:
    """Every name the file inside `name` may be uploaded as: plain, compressed, encrypted."""
    inner = packing(name).inner
    packed = [inner + suffix for suffix in COMPRESSIONS]
    return [*(inner, *packed), *(form + suffix for form in (inner, *packed)
                                 for suffix in ENCRYPTIONS)]


def takes(template: Mapping[str, Any], packed: Packing) -> bool:
    """Whether `template` (its defaults applied) takes a file packed as `packed`, or would if
    it were encrypted (`refusal` says why it is not)."""
    return packed.compression is None or template["compression"] == "auto"


def refusal(template: Mapping[str, Any], name: str) -> str | None:
    """Why an upload `name` that `template` names is refused, or None: an encrypted file that
    the template does not decrypt, or a clear one where it requires encryption, so that a
    misconfigured sender never leaks a clear file (each door adds its code: FTP's 553)."""
    packed = packing(name)
    if not takes(template, packed):
        return (f"{name!r}: the template of {template['file']!r} takes no compressed file "
                f"(compression: none); upload {packed.inner!r}")
    if template["encryption"] == "openpgp" and not packed.encrypted:
        return (f"{name!r} must be encrypted with OpenPGP to this account's key; upload "
                f"{expected_forms(template, name)}")
    if template["encryption"] == "none" and packed.encrypted:
        return (f"{name!r}: the template of {template['file']!r} takes no encrypted file "
                "(encryption: none)")
    return None


def expected_forms(template: Mapping[str, Any], name: str | None = None) -> str:
    """The names `template` takes for the file `name` (default its `file`), as a refusal says
    them: `contacts.csv.pgp, .gpg or .asc (compressed inside: contacts.csv.gz.pgp)`."""
    inner = packing(name).inner if name else template["file"]
    if template["encryption"] == "openpgp":
        forms = f"{inner}.pgp, .gpg or .asc"
        return forms + (f" (or compressed first: {inner}.gz.pgp, {inner}.zip.pgp)"
                        if template["compression"] == "auto" else "")
    return inner + (f" (or {inner}.gz, {inner}.zip)" if template["compression"] == "auto"
                    else "")
