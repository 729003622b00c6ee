"""A results file: one record per (model, seed), each pointing at the run that produced it."""
import json
import os
import os.path as osp
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Optional, Union

from .provenance import collect_provenance

FORMAT_VERSION = 1


@dataclass
class Record:
    """One trained model at one seed: its metric, its timings and free ``extra`` fields."""
    model: str
    seed: int
    value: float
    train_seconds: Optional[float] = None
    ms_per_iter: Optional[float] = None
    extra: dict = field(default_factory=dict)
    run: Optional[str] = None  # key of the provenance in ``Results.runs``

    @property
    def key(self) -> tuple:
        return self.model, self.seed


@dataclass
class Results:
    """An evidence table's data, as saved to JSON.

    ``metric`` names the value every record carries (``'COCO AP'``), ``precision`` the decimals
    it is shown with, ``baseline`` the model whose same-seed runs the ``compared`` models are
    paired with (``compared`` may instead map each model to its own baseline), ``columns``
    extra fields shown as columns (``{'field', 'header', 'format'}``, the mean over the seeds
    that have the field), ``also_paired`` further ``[model, baseline]`` pairs shown in a
    table of their own (stage 2 against stage 1, say), ``notes`` text shown under the table.
    ``runs`` maps a run's key to its provenance; records added after :meth:`start_run` point
    at it, so records merged from several runs keep their own.
    """
    table: str
    metric: str
    description: str = ''
    precision: int = 3
    baseline: Optional[str] = None
    compared: Union[List[str], Dict[str, str]] = field(default_factory=list)
    columns: List[dict] = field(default_factory=list)
    also_paired: List[List[str]] = field(default_factory=list)
    notes: str = ''
    runs: Dict[str, dict] = field(default_factory=dict)
    records: List[Record] = field(default_factory=list)
    _run: Optional[str] = field(default=None, repr=False, compare=False)

    def start_run(self, provenance: Optional[dict] = None) -> str:
        """Record the current process's provenance; later :meth:`add` calls point at it."""
        provenance = collect_provenance() if provenance is None else provenance
        key = provenance['date']
        suffix = 1
        while key in self.runs:
            suffix += 1
            key = f"{provenance['date']} #{suffix}"
        self.runs[key] = provenance
        self._run = key
        return key

    def add(self, model: str, seed: int, value: float, train_seconds: float = None,
            ms_per_iter: float = None, **extra) -> Record:
        """Add (or replace) the record of ``model`` at ``seed``."""
        if self._run is None:
            self.start_run()
        record = Record(model, int(seed), float(value), train_seconds, ms_per_iter, extra,
                        self._run)
        self.records = [r for r in self.records if r.key != record.key] + [record]
        return record

    def baselines(self) -> Dict[str, str]:
        """Each compared model's baseline."""
        if isinstance(self.compared, dict):
            return dict(self.compared)
        if self.compared and self.baseline is None:
            raise ValueError(f'table {self.table!r} compares {self.compared} but names no '
                             'baseline: set Results.baseline, or map each compared model to '
                             'its baseline')
        return {model: self.baseline for model in self.compared}

    def models(self) -> List[str]:
        """Model names in the order they were first added."""
        return list(dict.fromkeys(r.model for r in self.records))

    def of(self, model: str) -> List[Record]:
        """``model``'s records, by seed."""
        return sorted((r for r in self.records if r.model == model), key=lambda r: r.seed)

    def merge(self, other: 'Results') -> 'Results':
        """``other``'s records added to (or replacing, per (model, seed)) this table's; the
        description, baseline and columns become ``other``'s. Both must be the same table with
        the same metric."""
        if (other.table, other.metric) != (self.table, self.metric):
            raise ValueError(
                f'cannot merge table {other.table!r} ({other.metric}) into table '
                f'{self.table!r} ({self.metric}): a results file holds one table with one '
                'metric; write to another file or delete the old one')
        runs, renamed = dict(self.runs), {}
        for key, provenance in other.runs.items():  # two runs may start in the same minute
            renamed[key], suffix = key, 1
            while renamed[key] in runs and runs[renamed[key]] != provenance:
                suffix += 1
                renamed[key] = f'{key} #{suffix}'
            runs[renamed[key]] = provenance
        replaced = {r.key for r in other.records}
        records = [r for r in self.records if r.key not in replaced] + [
            replace(r, run=renamed.get(r.run, r.run)) for r in other.records]
        return replace(other, records=records,
                       runs={k: v for k, v in runs.items() if any(r.run == k for r in records)})

    def to_dict(self) -> dict:
        return dict(format_version=FORMAT_VERSION, table=self.table, metric=self.metric,
                    description=self.description, precision=self.precision,
                    baseline=self.baseline, compared=self.compared,
                    columns=list(self.columns), also_paired=[list(p) for p in self.also_paired],
                    notes=self.notes, runs=dict(self.runs),
                    records=[asdict(r) for r in self.records])

    @classmethod
    def from_dict(cls, data: dict) -> 'Results':
        data = dict(data)
        version = data.pop('format_version', None)
        if version != FORMAT_VERSION:
            raise ValueError(f'results format version {version!r}, this mmdistill reads '
                             f'{FORMAT_VERSION}: re-run the script that wrote the file')
        records = [Record(**r) for r in data.pop('records')]
        return cls(**data, records=records)

    def save(self, path: str) -> 'Results':
        """Write to ``path``, merged into what is there already (records of other (model,
        seed) pairs are kept); return what was written."""
        results = load_results(path).merge(self) if osp.isfile(path) else self
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(results.to_dict(), f, indent=1, ensure_ascii=False)
            f.write('\n')
        return results


def load_results(path: str) -> Results:
    """Read a results file written by :meth:`Results.save`."""
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'{path} is not a results file (invalid JSON: {error})') from None
    return Results.from_dict(data)
