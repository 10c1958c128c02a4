"""VQATask: answer a question about an image, with baselines that show whether the image was read.

Rows {"image", "question", "answer", "kind"} (kind: "colour", "shape", "yes/no" or ""); stream
[image patches, question, separator, answer, eos], only the answer and eos predicted. The question
comes before the separator, so the text FiLM reads the image given the question (as BabyAI's mission).

Two answers need no image: the train split's most common answer (majority) and, per question, its
most common answer (question only). On questions of kind colour or shape no question fixes the
answer, so ``accuracy_colour_shape`` above ``question_only_accuracy_colour_shape`` means the image
is read.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from gato.language import Example, vqa_prompt
from gato.tasks.image_text import ImageTextTask, Split, exact_match

IMAGE_KINDS = ("colour", "color", "shape")
"""Question kinds whose answer needs the image."""


def normalise(text: str) -> str:
    """An answer or question as compared: stripped, lower case."""
    return text.strip().lower()


class VQATask(ImageTextTask):
    """Visual question answering; arguments as :class:`gato.tasks.caption_task.CaptionTask`'s, rows
    {"image", "question", "answer", "kind"} ("kind" optional, "" when missing).

    Metrics (exact match after strip and lower case): accuracy; accuracy_colour_shape (questions of kind
    colour or shape); accuracy_<kind> per kind ("yes/no" -> accuracy_yes_no); and on the same questions
    majority_accuracy and question_only_accuracy (each also _colour_shape), the baselines above; examples.
    """

    kind = "vqa"
    loader = "load_vqa"
    columns = ("question", "answer")
    optional = {"kind": ""}
    target_column = "answer"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        answers = [normalise(a) for a in self.train.columns["answer"]]
        self.majority_answer = Counter(answers).most_common(1)[0][0]
        by_question = defaultdict(Counter)
        for q, a in zip(self.train.columns["question"], answers):
            by_question[normalise(q)][a] += 1
        self.question_answers = {q: c.most_common(1)[0][0] for q, c in by_question.items()}

    def prompt(self, split: Split, i: int, image: int | None = None) -> Example:
        """[patches, question, separator] of example ``i`` (or with image ``image``)."""
        image = split.image_of[i] if image is None else image
        return vqa_prompt(self.vocab, self.patches(split, image), self.rowcol, split.ids["question"][i])

    def evaluate_part(self, model, n_iterations: int, part: int, parts: int, use_cache: bool = True,
                      **kwargs) -> list[dict]:
        """Records {index, kind, question, answer, prediction, correct, majority_correct, question_only_correct}."""
        n = self.eval_count(n_iterations)
        indices = list(range(part, n, parts))
        split = self.test
        predictions = self.generate(model, [self.prompt(split, i) for i in indices], use_cache)
        records = []
        for i, pred in zip(indices, predictions):
            q, a = split.columns["question"][i], split.columns["answer"][i]
            guess = self.question_answers.get(normalise(q), self.majority_answer)
            records.append({"index": i, "kind": split.columns["kind"][i], "question": q, "answer": a,
                            "prediction": pred, "correct": exact_match(pred, a),
                            "majority_correct": exact_match(self.majority_answer, a),
                            "question_only_correct": exact_match(guess, a)})
        return records

    def summarize(self, records: list[dict]) -> dict:
        """The metrics of the class docstring from every part's records."""
        records = sorted(records, key=lambda r: r["index"])
        metrics = {"examples": float(len(records))}
        if not records:
            return metrics
        groups = {"": records, "_colour_shape": [r for r in records if normalise(r["kind"]) in IMAGE_KINDS]}
        for suffix, group in groups.items():
            if group:
                for key, field in (("accuracy", "correct"), ("majority_accuracy", "majority_correct"),
                                   ("question_only_accuracy", "question_only_correct")):
                    metrics[key + suffix] = sum(r[field] for r in group) / len(group)
        kinds = sorted({normalise(r["kind"]) for r in records} - {""})
        for kind in kinds:
            group = [r for r in records if normalise(r["kind"]) == kind]
            name = re.sub(r"[^a-z0-9]+", "_", kind).strip("_")
            metrics[f"accuracy_{name}"] = sum(r["correct"] for r in group) / len(group)
        return {k: float(v) for k, v in metrics.items()}
