"""The optimizer rules, one module each. Every module here is imported (and its rules
registered) when regtune.optim is: adding a rule adds a file, and edits no list."""

import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
