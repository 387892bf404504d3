"""Converts t5_test.model into a tokenizer.json of Hugging Face tokenizers' structure, for the T5 tokenizer tests.

Model folders often ship T5's tokenizer as tokenizer.json alone (no spiece.model). The file is written the way
transformers' convert_slow_tokenizer (SpmConverter / T5Converter) writes it for T5: a Unigram model with the pieces
and scores of the SentencePiece model in id order and its unk_id; a normalizer Sequence of Precompiled (the model's
normalizer_spec.precompiled_charsmap, base64), Strip (right) and Replace of runs of two or more spaces by one "▁";
a Metaspace pre-tokenizer ("▁", prepend_scheme "always"); a TemplateProcessing post-processor that appends "</s>";
and the control and unknown pieces as special added tokens. Run with Debian's python3-sentencepiece:

    /usr/bin/python3 make_t5_tokenizer_json.py

Writes tokenizer.json beside this script. The reference ids stay those of t5_reference.json (SentencePiece's own).
"""
import base64, json, os
import sentencepiece as spm

here = os.path.dirname(os.path.abspath(__file__))
sp = spm.SentencePieceProcessor(model_file=os.path.join(here, "t5_test.model"))


def fields(data):
    """The (field number, wire type, value) of one protobuf message; value is bytes for wire type 2, else an int."""
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            length, i = varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield field, wire, value


def varint(data, i):
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, i


# ModelProto.normalizer_spec (3) . precompiled_charsmap (2)
proto = sp.serialized_model_proto()
normalizer_spec = next(v for f, w, v in fields(proto) if f == 3 and w == 2)
charsmap = next(v for f, w, v in fields(normalizer_spec) if f == 2 and w == 2)

vocab = [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]
special = [i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
eos = sp.id_to_piece(sp.eos_id())
tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True} for i in special],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
        {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
                       "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
                       "special_tokens": {eos: {"id": eos, "ids": [sp.eos_id()], "tokens": [eos]}}},
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "model": {"type": "Unigram", "unk_id": sp.unk_id(), "vocab": vocab, "byte_fallback": False},
}
with open(os.path.join(here, "tokenizer.json"), "w", encoding="utf-8") as f:
    json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(len(vocab), "pieces;", len(charsmap), "bytes of character map")
