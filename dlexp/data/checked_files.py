"""Datasets whose files dlexp reads itself: torchvision downloads them, dlexp checks and reads.

torchvision's CIFAR and SVHN classes md5-check every file each time they are opened, even
with ``download=False``, and refuse anything that is not byte-identical to the official
release. dlexp keeps that check as the default (``data.verify_md5: true``: the same md5
sums, taken from the torchvision classes, with an error naming the file that differs) but
makes it a visible switch: ``data.verify_md5=false`` reads files in the official layout
that are not the official bytes (a re-pickled copy, the small fakes the tests write).
torchvision is used only to download what is missing.
"""

from __future__ import annotations

from pathlib import Path

from dlexp.data.base import RawData
from dlexp.data.torchvision_sets import TorchvisionDataModule, one_line
from dlexp.data_files import missing_files
from dlexp.errors import InputError


class CheckedFilesDataModule(TorchvisionDataModule):
    """A dataset read from official files listed with their md5 sums in :meth:`files`."""

    def md5_sums(self) -> dict[str, str]:
        """``{file name: md5}`` of the official files, as torchvision lists them."""
        raise NotImplementedError

    def files(self) -> list[tuple[str, str]]:
        """``(name relative to raw_folder(), md5)`` of every file :meth:`read` needs.

        The names are :data:`dlexp.data_files.LAYOUTS`'s, the md5 sums torchvision's.
        """
        md5 = self.md5_sums()
        return [(name, md5[name]) for name in self.expected_files]

    def fetch(self) -> None:
        """Download the missing files into :meth:`raw_folder` (torchvision's downloader)."""
        raise NotImplementedError

    def read(self, folder: Path) -> RawData:
        """Read the train and test splits from the files in ``folder``."""
        raise NotImplementedError

    def load(self) -> RawData:
        folder = self.raw_folder()
        if missing_files(self.cfg.name, self.cfg.root):
            if not self.cfg.download:
                raise self.missing_error("download is off (data.download=false)")
            try:
                self.fetch()
            except Exception as exc:  # offline, unwritable root, corrupt archive …
                raise self.missing_error(f"download failed: {one_line(exc)}") from None
        if self.cfg.verify_md5:
            self.verify(folder)
        try:
            return self.read(folder)
        except Exception as exc:  # not the official layout: truncated, wrong keys or shapes
            raise InputError(
                f"data.root={self.cfg.root}: cannot read {self.dataset_cls_name} from {folder} "
                f"({one_line(exc)})"
            ) from None

    def verify(self, folder: Path) -> None:
        from torchvision.datasets.utils import check_integrity

        for name, md5 in self.files():
            if not check_integrity(str(folder / name), md5):
                raise InputError(
                    f"data.root={self.cfg.root}: {folder / name} is not the official "
                    f"{self.dataset_cls_name} file (md5 differs from {md5}); delete it to "
                    "download it again, or set data.verify_md5=false to read it as it is"
                )
