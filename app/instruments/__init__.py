"""The instrument table: what TMC Console knows about kinds of instrument, in one TOML file.

``instruments.toml`` holds the command sets the console completes, each instrument's own
commands, status registers, demo panel (limits and demo script) and waveform template, the
waveform templates, and the quirk entries the protocol core applies (docs/instruments.md).
:func:`shipped_table` loads it once; :func:`parse_table` validates any text of that form with
line-numbered errors, skipping a broken entry and reporting it.

No Qt and nothing from PyPI here, and nothing above the protocol leaf: the core, the
waveforms and the Qt application all read the table.
"""

from .model import (
    GENERIC,
    UNUSED,
    BitGroup,
    BitNames,
    Catalog,
    CatalogEntry,
    DemoStep,
    DeviceProfile,
    DeviceRegister,
    TemplateChoice,
    TemplateSpec,
    header_forms,
)
from .table import SECTIONS, SHIPPED, EntryError, Table, TableError, parse_table, shipped_table, shipped_text

__all__ = [
    "GENERIC", "SECTIONS", "SHIPPED", "UNUSED", "BitGroup", "BitNames", "Catalog", "CatalogEntry", "DemoStep",
    "DeviceProfile", "DeviceRegister", "EntryError", "Table", "TableError", "TemplateChoice", "TemplateSpec",
    "header_forms", "parse_table", "shipped_table", "shipped_text",
]
