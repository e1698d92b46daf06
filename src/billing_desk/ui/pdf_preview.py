"""A printed report inside the application: page thumbnails, the page at a chosen zoom,
"page x of y", and printing through the system's print dialog at the printer's resolution.

Pages are rendered by PDFium (pypdfium2): 9 MB installed, against 157 MB for PySide6-Addons,
whose wheel for this platform does not even carry QtPdf. PDFium is not thread-safe, so every
rendering happens on the GUI thread, one page at a time, when it is needed.
"""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap, QResizeEvent, QShowEvent
from PySide6.QtPrintSupport import QPrintDialog, QPrinter
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

# PDF points are 1/72 inch; the screen's logical pixels are taken as 96 per inch.
POINTS_PER_INCH = 72
SCREEN_DPI = 96
# 0 is "fit the page's width to the window", the default: a slip or statement is read whole.
FIT_WIDTH = 0
ZOOMS = (FIT_WIDTH, 50, 75, 100, 125, 150, 200)
THUMBNAIL_WIDTH = 110


def page_image(page: pdfium.PdfPage, dots_per_inch: float) -> QImage:
    """One page as an image at `dots_per_inch` (the screen's, or the printer's)."""
    bitmap = page.render(scale=dots_per_inch / POINTS_PER_INCH, rev_byteorder=True)
    image = QImage(
        bitmap.buffer,
        bitmap.width,
        bitmap.height,
        bitmap.stride,
        QImage.Format.Format_RGBA8888 if bitmap.n_channels == 4 else QImage.Format.Format_RGB888,
    )
    return image.copy()  # own the pixels: the bitmap's buffer goes with it


class PdfPreview(QWidget):
    """Shows one PDF file. `page_count` is what the person reads as "of y"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Report preview")
        self.document: pdfium.PdfDocument | None = None
        self.path: Path | None = None
        self.current = 0
        self.thumbnails = QListWidget(self)
        self.thumbnails.setAccessibleName("Pages")
        self.thumbnails.setViewMode(QListWidget.ViewMode.IconMode)
        self.thumbnails.setFlow(QListWidget.Flow.TopToBottom)
        self.thumbnails.setWrapping(False)
        self.thumbnails.setIconSize(QSize(THUMBNAIL_WIDTH, int(THUMBNAIL_WIDTH * 1.3)))
        self.thumbnails.setMovement(QListWidget.Movement.Static)
        self.thumbnails.setFixedWidth(THUMBNAIL_WIDTH + 24)
        self.page = QLabel(self)
        self.page.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.page.setAccessibleName("Page")
        self.page_area = QScrollArea(self)
        self.page_area.setWidget(self.page)
        self.page_area.setWidgetResizable(True)
        self.zoom = QComboBox(self)
        self.zoom.setAccessibleName("Zoom")
        for percent in ZOOMS:
            self.zoom.addItem("Fit width" if percent == FIT_WIDTH else f"{percent} %", percent)
        self.zoom.setCurrentIndex(ZOOMS.index(FIT_WIDTH))
        self.where = QLabel(self)
        self.where.setAccessibleName("Page number")
        zoom_caption = QLabel("&Zoom:", self)
        zoom_caption.setBuddy(self.zoom)
        bar = QHBoxLayout()
        bar.addWidget(self.where)
        bar.addStretch(1)
        bar.addWidget(zoom_caption)
        bar.addWidget(self.zoom)
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(bar)
        column.addWidget(self.page_area, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.thumbnails)
        layout.addWidget(right, 1)
        # At "fit width" the page follows the window's width, redrawn once resizing pauses.
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.setInterval(60)
        self._refit.timeout.connect(lambda: self.show_page(self.current))
        self.thumbnails.currentRowChanged.connect(self.show_page)
        self.zoom.currentIndexChanged.connect(lambda _: self.show_page(self.current))
        self.clear()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.document is not None and self.zoom.currentData() == FIT_WIDTH:
            self._refit.start()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.document is not None:
            self._refit.start()

    @property
    def page_count(self) -> int:
        return len(self.document) if self.document is not None else 0

    def clear(self) -> None:
        if self.document is not None:
            self.document.close()
        self.document, self.path = None, None
        self.thumbnails.clear()
        self.page.setText("Generate a report to see it here.")
        self.where.setText("")

    def open(self, path: Path) -> None:
        """Show the PDF at `path` from its first page."""
        self.clear()
        self.document, self.path = pdfium.PdfDocument(str(path)), path
        for number in range(self.page_count):
            item = QListWidgetItem(f"{number + 1}")
            image = page_image(self.document[number], 24)
            item.setIcon(QIcon(QPixmap.fromImage(image)))
            self.thumbnails.addItem(item)
        self.thumbnails.setCurrentRow(0)
        self.show_page(0)

    def show_page(self, number: int) -> None:
        if self.document is None or not 0 <= number < self.page_count:
            return
        self.current = number
        page = self.document[number]
        percent = int(self.zoom.currentData() or FIT_WIDTH)
        if percent == FIT_WIDTH:
            room = self.page_area.viewport().width() - 4
            scroll_bar = self.page_area.verticalScrollBar()
            if not scroll_bar.isVisible():
                # A page is taller than it is wide: once shown, the scroll bar takes its width.
                room -= scroll_bar.sizeHint().width()
            dpi = max(room, 200) / (page.get_width() / POINTS_PER_INCH)
        else:
            dpi = SCREEN_DPI * percent / 100
        ratio = self.devicePixelRatioF()
        image = page_image(page, dpi * ratio)
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)
        self.page.setPixmap(pixmap)
        self.where.setText(f"Page {number + 1} of {self.page_count}")

    def print_to(self, printer: QPrinter) -> int:
        """Print every page at the printer's resolution; returns the pages printed."""
        if self.document is None:
            return 0
        painter = QPainter()
        if not painter.begin(printer):
            raise OSError("The printer could not be opened.")
        try:
            dpi = printer.resolution()
            for number in range(self.page_count):
                if number:
                    printer.newPage()
                image = page_image(self.document[number], dpi)
                target = painter.viewport()
                if image.width() > target.width() or image.height() > target.height():
                    # Other paper than the report's: the page is fitted, never cut.
                    image = image.scaled(
                        target.size(),
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation,
                    )
                painter.drawImage(target.x(), target.y(), image)
        finally:
            painter.end()
        return self.page_count

    def print_with_dialog(self) -> int:
        """The system's print dialog, then print; 0 when the person cancelled."""
        printer = QPrinter(QPrinter.PrinterMode.HighResolution)
        dialog = QPrintDialog(printer, self)
        if dialog.exec() != QPrintDialog.DialogCode.Accepted:
            return 0
        return self.print_to(printer)
