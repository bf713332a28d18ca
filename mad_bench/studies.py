"""Where an Optuna study lives: a journal file (``RESULTS/<study>/journal.log``, the default of
``tune`` / ``search``) or an RDB URL. One opener for the commands that write studies (tune,
search) and those that read them (``plot --kind search-history``, ``report --study``)."""
from __future__ import annotations

from pathlib import Path

JOURNAL = "journal.log"


def default_journal(results: str | Path, study: str) -> Path:
    """The journal file ``tune`` / ``search`` write when no ``--storage`` is given."""
    return Path(results) / study / JOURNAL


def open_storage(url: str | None, default_path: Path, create: bool = True):
    """Journal file (``default_path`` / a path) or RDB URL; ValueError if it cannot be opened.
    ``create=False`` (a reader): a journal file that does not exist is an error, not a new file."""
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    target = url or str(default_path)
    if "://" not in target and not create and not Path(target).is_file():
        raise ValueError(f"no Optuna storage at {target}: no such journal file (give --storage "
                         f"URL or PATH, or --results where the study was written)")
    try:
        if "://" in target:
            return RDBStorage(target)
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:  # noqa: BLE001 - sqlalchemy, driver and OS errors alike
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--storage {target}: cannot open Optuna storage ({type(exc).__name__}: "
                         f"{detail[:200]})") from None


def load_study(study: str | None, storage: str | None = None, results: str | Path = "results"):
    """A stored study, read: ``storage`` (URL or journal path) or, without it, the journal of
    ``results/<study>/``. ValueError naming the studies there when ``study`` is not one."""
    import optuna

    if not study:
        raise ValueError("--study NAME is needed (the name tune / search printed)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = open_storage(storage, default_journal(results, study), create=False)
    where = storage or str(default_journal(results, study))
    try:
        return optuna.load_study(study_name=study, storage=opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        raise ValueError(f"no study {study!r} in {where} (studies: {', '.join(names) or 'none'})") from None
