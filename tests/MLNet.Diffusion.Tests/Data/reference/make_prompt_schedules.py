#!/usr/bin/env python3
"""Writes prompt_schedules.json: AUTOMATIC1111's prompt-editing schedules for fixed and random prompts, made with lark
itself, so that PromptSchedule (a hand-written reader of the same language) is checked against the grammar A1111 uses.

Source: stable-diffusion-webui, modules/prompt_parser.py, get_learned_conditioning_prompt_schedules (1.6 and later, no
hires steps, use_old_scheduling off). Its grammar is restated below (a language definition, needed verbatim for the
comparison); the schedule is computed here from its documented meaning:
  - a `scheduled` node's number v is read as v * steps when its text has a '.', else as v; its end step is
    min(steps, int(v)), and it joins the step list when it is at least 1;
  - any `alternate` node puts every step 1..steps in the list; the steps count is always in it;
  - the text at step t takes, for each scheduled node, the part before the last ':' when t <= end step (nothing for
    the `[to:when]` form) and the part after it otherwise, and option (t - 1) mod n of an alternation;
  - a prompt lark rejects has the one entry (steps, prompt).
A1111's own code raises OverflowError for a number too large for a float; such prompts are not generated here.

Needs python3-lark (Debian). Run from this folder:  /usr/bin/python3 make_prompt_schedules.py
"""
import json
import os
import random
import subprocess
import sys

import lark

GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

PARSER = lark.Lark(GRAMMAR)


def end_step(number_token, steps):
    value = float(number_token)
    if "." in number_token:
        value *= steps
    return min(steps, int(value))


def text_at(node, step, steps):
    if isinstance(node, lark.Token):
        return str(node) if node.type not in ("NUMBER",) else ""
    if node is None:
        return ""
    if node.data == "scheduled":
        before, after, _, number, _ = node.children
        chosen = before if step <= end_step(str(number), steps) else after
        return text_at(chosen, step, steps)
    if node.data == "alternate":
        option = node.children[(step - 1) % len(node.children)]
        return text_at(option, step, steps)
    return "".join(text_at(child, step, steps) for child in node.children)


def schedule(prompt, steps):
    try:
        tree = PARSER.parse(prompt)
    except lark.exceptions.LarkError:
        return [[steps, prompt]]
    ends = {steps}
    for node in tree.iter_subtrees():
        if node.data == "scheduled":
            end = end_step(str(node.children[-2]), steps)
            if end >= 1:
                ends.add(end)
        elif node.data == "alternate":
            ends.update(range(1, steps + 1))
    return [[t, text_at(tree, t, steps)] for t in sorted(ends)]


FIXED = [
    ("test", 10), ("a [b:3]", 10), ("a [b: 3]", 10), ("a [[[b]]:2]", 10), ("[(a:2):3]", 10), ("a [b : c : 1] d", 10),
    ("a[b:[c:d:2]:1]e", 10), ("a [unbalanced", 10), ("a [b:.5] c", 10), ("a [{b|d{:.5] c", 10), ("((a][:b:c [d:3]", 10),
    ("[a|(b:1.1)]", 10), ("[fe|]male", 10), ("[fe|||]male", 10),
    ("a [fantasy:cyberpunk:16] landscape", 20), ("a [fantasy:cyberpunk:16] landscape", 30),
    ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
     "[ in background:0.25] [shoddy:masterful:0.5]", 100),
    ("[dog|cat]", 20), ("[cow|horse] in a field", 6), ("a [b:c:1.0]", 10), ("a [b:c:1]", 10), ("a [b:c:0]", 10),
    ("a [b:c:-3]", 10), ("a [b:c:+4]", 10), ("a [b:c:1e1]", 10), ("a [b:c:5.]", 10), ("a [b:c:2.5e-1]", 10),
    ("a [b:c:99999999999]", 10), ("a | b [c:d:2]", 10), ("a [b|c] \\", 10), ("a \\[b:c:2\\] d", 10),
    ("a [b\\:c:d:2]", 10), ("a [b\\|c|d]", 10), ("[a:b:c:3]", 10), ("(a:[b:c:2])", 10), ("(a|b)", 10), ("[::3]", 10),
    ("[a::3]", 10), ("[:a:3]", 10), ("[|]", 10), ("[a|[b|c]]", 6), ("[[a:b:2]|c]", 6), ("x [a:b:3 ]", 10),
    ("x [a:b: 3 ]x", 10), ("[a:b:3x]", 10), ("", 10), ("[", 10), ("]", 10), (":", 10), ("|", 10), ("\\", 10),
]

NUMBERS = ["3", "1", "0", "12", "0.25", ".5", "0.75", "1.0", "5.", "-2", "+4", "1e1", "2.5e-1", " 2", "4 "]
WORDS = ["a", "red", "cat", "big dog", "", " ", "x y", "\\(", "\\:", "\\|", "\\]"]
SPECIALS = ["[", "]", "(", ")", ":", "|", "\\", " "]


def piece(rng, depth):
    """A random prompt piece: mostly well-formed A1111 syntax, nested up to three levels."""
    choice = rng.randrange(10) if depth < 3 else 0
    inner = lambda: "".join(piece(rng, depth + 1) for _ in range(rng.randint(0, 2)))
    if choice <= 2:
        return rng.choice(WORDS)
    if choice == 3:
        return "[" + inner() + ":" + inner() + ":" + rng.choice(NUMBERS) + "]"
    if choice == 4:
        return "[" + inner() + ":" + rng.choice(NUMBERS) + "]"
    if choice == 5:
        return "[" + inner() + "::" + rng.choice(NUMBERS) + "]"
    if choice == 6:
        return "[" + "|".join(inner() for _ in range(rng.randint(2, 3))) + "]"
    if choice == 7:
        return "(" + inner() + (":" + rng.choice(["1.2", "0.5", "x"]) if rng.random() < 0.5 else "") + ")"
    if choice == 8:
        return "[" + inner() + "]"
    return rng.choice(SPECIALS)


def random_prompts(count, seed):
    """Random prompts from A1111's syntax, a third of them with one character inserted or deleted."""
    rng = random.Random(seed)
    for _ in range(count):
        prompt = "".join(piece(rng, 0) for _ in range(rng.randint(1, 4)))
        if prompt and rng.random() < 1 / 3:
            at = rng.randrange(len(prompt))
            prompt = prompt[:at] + prompt[at + 1:] if rng.random() < 0.5 else prompt[:at] + rng.choice(SPECIALS) + prompt[at:]
        yield prompt, rng.choice([1, 3, 10, 20])


HASH_SEEDS = range(8)
MORE_SEEDS = range(8, 64)  # for the cases whose reading changed with the first eight


def collect(inputs, indices, seeds, readings):
    """Adds to readings[i] each distinct schedule of inputs[i] seen in a process with each hash seed."""
    chosen = [inputs[i] for i in indices]
    for seed in seeds:
        env = dict(os.environ, PYTHONHASHSEED=str(seed), PROMPT_SCHEDULES_WORKER="1")
        out = subprocess.run([sys.executable, os.path.abspath(__file__)], input=json.dumps(chosen), env=env,
                             capture_output=True, text=True, check=True).stdout
        for i, result in zip(indices, json.loads(out)):
            if result not in readings[i]:
                readings[i].append(result)


def main():
    """Each case is parsed in processes with different PYTHONHASHSEED values: for some prompts with a run of brackets
    next to an edit, lark's choice between the readings (an edit, or plain text) changes with the hash seed, so A1111's
    result itself does. Such cases list every schedule seen, under "schedules"; the others have one "schedule"."""
    if os.environ.get("PROMPT_SCHEDULES_WORKER"):
        cases = json.load(sys.stdin)
        json.dump([schedule(c["prompt"], c["steps"]) for c in cases], sys.stdout)
        return
    inputs = [{"prompt": p, "steps": s} for p, s in FIXED]
    seen = {(p, s) for p, s in FIXED}
    for p, s in random_prompts(1500, 1111):
        if (p, s) not in seen:
            seen.add((p, s))
            inputs.append({"prompt": p, "steps": s})
    readings = [[] for _ in inputs]
    collect(inputs, range(len(inputs)), HASH_SEEDS, readings)
    collect(inputs, [i for i, r in enumerate(readings) if len(r) > 1], MORE_SEEDS, readings)
    cases = [{**case, "schedule": r[0]} if len(r) == 1 else {**case, "schedules": r} for case, r in zip(inputs, readings)]
    write({"source": "make_prompt_schedules.py (lark " + lark.__version__ + ", PYTHONHASHSEED 0-7, 8-63 where those differ)",
           "cases": cases})


def write(reference):
    """prompt_schedules.json, one case per line."""
    here = os.path.dirname(os.path.abspath(__file__))
    lines = [json.dumps(case, ensure_ascii=False) for case in reference["cases"]]
    with open(os.path.join(here, "prompt_schedules.json"), "w", encoding="utf-8") as f:
        f.write('{"source": ' + json.dumps(reference["source"]) + ',\n"cases": [\n' + ",\n".join(lines) + "\n]}\n")


if __name__ == "__main__":
    main()
