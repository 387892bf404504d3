"""Trains a small SentencePiece Unigram model with T5's settings and writes reference ids for the T5 tokenizer tests.

T5's own spiece.model cannot be fetched here, so the tests use a model trained by SentencePiece's trainer with the
options T5's model was trained with (unigram, nmt_nfkc normalisation, pad 0 / eos 1 / unk 2, no bos, no byte
fallback); the ids come from SentencePiece itself. Run with Debian's python3-sentencepiece:

    /usr/bin/python3 make_t5_reference.py

Writes t5_test.model and t5_reference.json beside this script. The corpus is generated from a seeded word list, so
the output is reproducible.
"""
import io, json, os, random
import sentencepiece as spm

here = os.path.dirname(os.path.abspath(__file__))
os.chdir(here)  # relative names only: the trainer stores its model prefix in the model file
rng = random.Random(20261205)
words = ("a photo of an astronaut riding horse on the moon castle in mountains at sunset painting by monet "
         "cat dog sitting under tree with flowers city street night rain neon lights portrait old man woman "
         "highly detailed digital art trending cinematic lighting 4k 8k sharp focus watercolor oil canvas forest "
         "river lake boat sky clouds snow winter summer red blue green yellow black white golden hour").split()
extras = ["café", "naïve", "Zürich", "東京の夜", "北京", "emoji 🚀 rocket", "ｆｕｌｌｗｉｄｔｈ １２３", "ﬁne ligature",
          "x² y³", "①②③", "Ω ohm", "e\u0301 composed", "tab\tseparated", "2024-12-05", "3.14159", "100%"]
lines = []
for _ in range(4000):
    n = rng.randint(3, 14)
    line = " ".join(rng.choice(words) for _ in range(n))
    if rng.random() < 0.2: line += ", " + rng.choice(extras)
    if rng.random() < 0.3: line = line.capitalize()
    if rng.random() < 0.2: line += " " + str(rng.randint(0, 99999))
    lines.append(line)

spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_prefix="t5_test", model_type="unigram", vocab_size=400,
    normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=False,
    character_coverage=0.9995, add_dummy_prefix=True, remove_extra_whitespaces=True, split_digits=False,
    input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
os.remove("t5_test.vocab")

sp = spm.SentencePieceProcessor(model_file=os.path.join(here, "t5_test.model"))
prompts = [
    "", " ", "a photo of an astronaut riding a horse on the moon",
    "A Castle in the Mountains at Sunset, painting by Monet",
    "   leading and   inner   whitespace runs   ", "tabs\tand\nnewlines\r\nhere",
    "digits 0123456789 and 3.14159 and 2024-12-05", "ｆｕｌｌｗｉｄｔｈ １２３ and ﬁne ligatures",
    "café naïve Zürich", "e\u0301 (decomposed) vs é (composed)", "東京の夜 and 北京", "emoji 🚀🚀 rocket",
    "unknown ☃☃☃ snowmen and ✈ planes", "x² y³ ①②③ Ω", "UPPER lower MiXeD", "punctuation!!! ??? ... ,,, ;;;",
    "a" * 60, "zzzz qqqq xxxx unusual letters",
]
cases = [{"text": p, "ids": sp.encode(p) + [1]} for p in prompts]
header = {"model": "t5_test.model", "eos_id": 1, "pad_id": 0, "unk_id": 2,
          "note": "ids from SentencePiece 0.1.97 encode(text) + [eos], as transformers' T5Tokenizer adds it"}
with io.open(os.path.join(here, "t5_reference.json"), "w", encoding="utf-8") as f:  # one case a line
    f.write("{\n" + "".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n" for k, v in header.items()))
    f.write(' "cases": [\n' + ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases) + "\n ]\n}\n")
print(len(cases), "cases;", sp.get_piece_size(), "pieces")
