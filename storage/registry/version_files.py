"""The files of a version: load one verified, export all, re-hash them.

Every read goes through the content-addressed store, which re-hashes the
bytes: a changed byte raises :class:`~storage.errors.IntegrityError` naming
the artifact.
"""

from __future__ import annotations

from pathlib import Path

from storage.artifacts import ArtifactStore, validate_artifact_name
from storage.errors import ValidationError
from storage.registry.reads import RegistryReads, VersionRef
from storage.registry.records import ArtifactCheck, VerifyReport


class VersionFilesMixin(RegistryReads):
    """Artifact access for the registry; needs ``self.artifacts``."""

    artifacts: ArtifactStore

    def load_artifact(self, model: str, version: VersionRef, name: str) -> bytes:
        """The verified bytes of one artifact of a version."""
        found = self.artifact(model, version, name)
        return self.artifacts.get_bytes(found.sha256, name=f"{model}/{self._ref_label(version)}/{name}")

    def export_version(self, model: str, version: VersionRef, dest: str | Path) -> list[Path]:
        """Write every artifact of a version under ``dest`` (verified, atomically)."""
        target = Path(dest).absolute()
        mv = self.get_version(model, version)
        written = []
        for art in mv.artifacts:
            path = (target / validate_artifact_name(art.name)).resolve()
            if not path.is_relative_to(target.resolve()):
                raise ValidationError(f"artifact name {art.name!r} escapes {target}")
            written.append(self.artifacts.download(art.sha256, path, name=f"{model}/{mv.number}/{art.name}"))
        return written

    def verify_version(self, model: str, version: VersionRef) -> VerifyReport:
        """Re-hash every artifact of a version against its recorded checksum."""
        mv = self.get_version(model, version)
        checks = []
        for art in mv.artifacts:
            try:
                found = self.artifacts.hash_stored(art.sha256)
            except FileNotFoundError:
                checks.append(ArtifactCheck(art.name, art.sha256, False, "missing from the store"))
                continue
            ok = found == art.sha256
            checks.append(ArtifactCheck(art.name, art.sha256, ok, "" if ok else f"content hashes to {found}"))
        return VerifyReport(model, mv.number, all(c.ok for c in checks), checks)
