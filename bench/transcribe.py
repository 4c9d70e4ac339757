"""Speech recognition side by side: every local model and policy on the same recordings, in one run.

Per configuration (tiny.en, base, any model folder given with --model, and the `auto` and `fast`
policies), each in its own process so load time and peak RSS are its own:
- English WER on two voices no test or setting was tuned on (flite rms and kal16 reading a
  paragraph written for this bench), and on the two committed English fixtures (piper joe, flite
  slt: the research that chose the policy listened to these, so they are shown apart);
- Mandarin CER on the committed zho-tts fixture, plus any recordings listed in
  `$BENCH_SPEECH_EXTRA/references.json` (for material that cannot be committed, e.g. a
  non-commercial voice);
- language detection (first 30 s of speech, multilingual models) right or wrong per file;
- real-time factor, model load time, peak RSS.
Then, through the MCP in-memory client with the default policy: one call and the second question
served from the cache; and the bad inputs: Mandarin with the English-only model forced, wrong
`language` arguments, a corrupt model part, music without speech, a 3-hour file (cap and progress).
Targets on this 2-core machine: English WER < 8 % with `auto`, Mandarin CER < 15 %, RTF < 0.3 for
the multilingual default, detection right on every file. Needs flite (apt-get install flite).
Run: `.venv/bin/python bench/transcribe.py [--model FOLDER ...] [--skip-long]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import work_area  # noqa: E402

from tests.error_rates import edit_distance  # noqa: E402

WORK = work_area("transcribe")
FIXTURES = REPO / "tests" / "fixtures"

# Written for this bench; no numbers, so WER does not depend on how digits are normalised.
HELD_OUT = (
    "Every spring the village library opens its doors for a week of readings. Children bring their own books and "
    "read a page aloud to their friends. The librarian keeps a list of the stories they choose, and at the end of "
    "the week she reads the most popular one to everyone. Parents say the readings help shy children speak with "
    "confidence. This year the library also invited a local baker, who told the story of how bread is made and "
    "shared warm rolls with the audience. Next year they hope to add a music evening, with songs from the region "
    "and a small choir of volunteers."
)
HELD_OUT_VOICES = ("rms", "kal16")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()


def han(text: str) -> list[str]:
    from shared import chinese_text, numerals

    return re.findall(r"[\u3400-\u9fff]", numerals.to_chinese(chinese_text.convert(text, "simplified")))


def error_rate(item: dict, text: str) -> float:
    if item["language"] == "zh":
        reference = han(item["text"])
        return edit_distance(reference, han(text)) / max(len(reference), 1)
    reference = words(item["text"])
    return edit_distance(reference, words(text)) / max(len(reference), 1)


# --- material -------------------------------------------------------------------------------------------


def material() -> list[dict]:
    items = []
    for voice in HELD_OUT_VOICES:
        wav = WORK / f"en_flite_{voice}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", HELD_OUT, "-o", str(wav)], check=True)
        items.append({"name": wav.name, "path": str(wav), "text": HELD_OUT, "language": "en", "set": "held-out"})
    references = json.loads((FIXTURES / "speech_references.json").read_text())
    for name in ("speech_en_piper_joe.ogg", "speech_en_flite_slt.ogg", "speech_zh_zhotts.ogg"):
        entry = references[name]
        items.append({"name": name, "path": str(FIXTURES / name), "text": entry["text"], "language": entry["language"],
                      "set": "tuning" if entry["language"] == "en" else "committed"})
    extra = os.environ.get("BENCH_SPEECH_EXTRA")
    if extra:
        for name, entry in json.loads((Path(extra) / "references.json").read_text()).items():
            items.append({"name": Path(name).name, "path": str(Path(extra) / name), "text": entry["text"],
                          "language": entry["language"], "set": "extra"})
    from shared import audio

    for item in items:
        item["duration"] = audio.probe(Path(item["path"])).duration or 0.0
    return items


# --- one configuration, in its own process ----------------------------------------------------------------


def worker(config: dict) -> None:
    os.environ["TOOLSUITE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-transcribe-")
    os.environ.pop("TOOLSUITE_TRANSCRIBE_MODEL", None)
    os.environ["TOOLSUITE_TRANSCRIBE_POLICY"] = config.get("policy", "auto")
    if config.get("folder"):
        os.environ["TOOLSUITE_TRANSCRIBE_MODEL"] = config["folder"]
    from shared import audio, speech_models, transcription

    if config.get("only"):  # the model alone: no other installed model joins in (e.g. base detecting for tiny.en)
        speech_models.installed = lambda key: key == config["only"]
    started = time.perf_counter()
    loaded = [transcription.whisper(name) for name in config["load"]]
    load = time.perf_counter() - started
    multilingual = bool(getattr(loaded[0].model, "is_multilingual", False)) if loaded else False
    out = {"load_s": round(load, 2), "multilingual": multilingual, "files": []}
    for item in config["items"]:
        path = Path(item["path"])
        record: dict = {"name": item["name"]}
        if config.get("detect") and multilingual:
            _offset, samples = next(audio.windows(path))
            began = time.perf_counter()
            if config.get("folder"):  # detection on the model under test, not the bundled base
                language, probability, _ = loaded[0].detect_language(audio=samples[: 30 * audio.SAMPLE_RATE])
                record["detected"] = [language, round(float(probability), 3)]
            else:
                found = transcription.detect_language(samples)
                record["detected"] = [found.language, found.probability] if found else [None, 0.0]
            record["detect_s"] = round(time.perf_counter() - began, 3)
        began, cpu = time.perf_counter(), time.process_time()
        result = transcription.transcribe_file(path)
        record.update(wall_s=round(time.perf_counter() - began, 3), cpu_s=round(time.process_time() - cpu, 3),
                      text=result.text, language=result.language, model=result.model, notes=result.notes)
        out["files"].append(record)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["label"] = speech_models.label(config["name"])
    print(json.dumps(out, ensure_ascii=False))


def run_config(config: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True, text=True,
                          cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{config['name']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- MCP calls and bad input ------------------------------------------------------------------------------


def three_hour_file(target: Path) -> float:
    """The flite slt fixture, then silence, to three hours (8 kHz, 8-bit WAV, 86 MB)."""
    import av
    import numpy as np

    with av.open(str(FIXTURES / "speech_en_flite_slt.ogg")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=8000)
        speech = np.concatenate([o.to_ndarray().reshape(-1) for f in container.decode(audio=0)
                                 for o in resampler.resample(f)])
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes((np.clip(speech, -1, 1) * 127 + 128).astype(np.uint8).tobytes())
        for _ in range(18):
            out.writeframes(bytes([128]) * 8000 * 600)
    return speech.shape[0] / 8000 + 18 * 600


def music(target: Path, seconds: float = 10.0) -> None:
    import numpy as np

    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    signal = np.zeros_like(t)
    for index in range(int(seconds * 2)):
        mask = (t >= index * 0.5) & (t < index * 0.5 + 0.5)
        chord = chords[index % len(chords)]
        signal[mask] = sum(np.sin(2 * np.pi * f * t[mask]) for f in chord) * np.exp(-3 * (t[mask] - index * 0.5)) / 4
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal * 32767).astype("<i2").tobytes())


def corrupt_part_site(site: Path) -> None:
    """A copy of the second model package with one byte changed, ahead of the real one on sys.path."""
    from shared import speech_models

    piece = speech_models.WHISPER_BASE.pieces[1]
    source = piece.locate()
    package = site / piece.module
    shutil.copytree(source.parent.parent, package)
    target = package / piece.resource
    with open(target, "r+b") as handle:
        handle.seek(10_000_000)
        byte = handle.read(1)
        handle.seek(10_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))


async def mcp_part(items: list[dict], skip_long: bool) -> None:
    from mcp import Client

    from servers.transcribe.server import build

    os.environ["TOOLSUITE_ROOTS"] = str(WORK)
    os.environ["TOOLSUITE_CACHE_DIR"] = str(WORK / "cache")
    item = next(i for i in items if i["set"] == "held-out")
    async with Client(build()) as client:
        began = time.perf_counter()
        first = await client.call_tool("audio_transcription", {"audio_path_or_url": item["path"], "format": "text"})
        wall = time.perf_counter() - began
        began = time.perf_counter()
        second = await client.call_tool("audio_question_answering",
                                        {"audio_path_or_url": item["path"], "question": "Who visited the library?"})
        again = time.perf_counter() - began
    data = first.structured_content
    print(f"through MCP (auto, {item['name']}, {item['duration']:.0f} s, first call of the process, model load "
          f"included): {wall:.1f} s, WER {error_rate(item, data['text']) * 100:.1f} %, model {data['model']}")
    print(f"second question on the same file: {again * 1000:.0f} ms (transcript from cache: "
          f"{second.structured_content['transcript']['cached']}; target < 1 s)")

    print("\nbad input (through MCP):")
    zh = str(FIXTURES / "speech_zh_zhotts.ogg")
    shutil.copy(zh, WORK / "zh.ogg")
    async with Client(build()) as client:
        os.environ["TOOLSUITE_TRANSCRIBE_POLICY"] = "tiny.en"
        forced = await client.call_tool("audio_transcription", {"audio_path_or_url": "zh.ogg", "format": "text"})
        os.environ.pop("TOOLSUITE_TRANSCRIBE_POLICY")
        print("  Mandarin, tiny.en forced:", _first_lines(forced, 3))
        unknown = await client.call_tool("audio_transcription", {"audio_path_or_url": "zh.ogg", "language": "klingon"})
        print("  language='klingon':", _first_lines(unknown, 1))
        wrong = await client.call_tool("audio_transcription", {"audio_path_or_url": "zh.ogg", "language": "en",
                                                               "format": "text"})
        print("  Mandarin with language='en':", _first_lines(wrong, 3))
        music(WORK / "music.wav")
        began = time.perf_counter()
        tones = await client.call_tool("audio_transcription", {"audio_path_or_url": "music.wav"})
        print(f"  10 s of music, no voice ({time.perf_counter() - began:.1f} s): "
              f"{len(tones.structured_content['segments'])} segments;", _first_lines(tones, 2).split("\n")[-1])
    corrupt_part_report()
    if not skip_long:
        await three_hours()


def corrupt_part_report() -> None:
    """In a fresh process: a corrupt second part shadowing the installed one, and a fresh models folder."""
    site = WORK / "corrupt-site"
    corrupt_part_site(site)
    code = ("import anyio, sys\nfrom mcp import Client\nfrom servers.transcribe.server import build\n"
            "async def main():\n    async with Client(build()) as c:\n"
            "        r = await c.call_tool('audio_transcription', {'audio_path_or_url': 'zh.ogg'})\n"
            "        print(r.is_error, r.content[0].text)\nanyio.run(main)\n")
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{REPO}", TOOLSUITE_MODELS_DIR=str(WORK / "fresh-models"),
               TOOLSUITE_CACHE_DIR=str(WORK / "cache-corrupt"))
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    print(f"  a corrupt model part ({time.perf_counter() - began:.1f} s, isError first): {done.stdout.strip()[:400]}")
    shutil.rmtree(site, ignore_errors=True)


async def three_hours() -> None:
    from mcp import Client

    from servers.transcribe.server import build

    seconds = three_hour_file(WORK / "three_hours.wav")
    updates: list[tuple[float, float | None]] = []

    async def on_progress(done, total, message):
        updates.append((done, total))

    async with Client(build(), mode="legacy") as client:
        os.environ["TOOLSUITE_AUDIO_MAX_SECONDS"] = "7200"
        began = time.perf_counter()
        capped = await client.call_tool("audio_transcription", {"audio_path_or_url": "three_hours.wav"})
        refused = time.perf_counter() - began
        os.environ.pop("TOOLSUITE_AUDIO_MAX_SECONDS")
        print(f"  3-hour file with TOOLSUITE_AUDIO_MAX_SECONDS=7200: refused in {refused * 1000:.0f} ms:",
              _first_lines(capped, 1))
        began = time.perf_counter()
        full = await client.call_tool("audio_transcription", {"audio_path_or_url": "three_hours.wav"},
                                      progress_callback=on_progress)
        wall = time.perf_counter() - began
    over = [u for u in updates if u[1] is not None and u[0] > u[1]]
    print(f"  3-hour file ({seconds / 3600:.2f} h: 4 s of speech, then silence), whole: {wall:.1f} s, "
          f"{len(full.structured_content['segments'])} segment(s), {len(updates)} progress updates, last "
          f"{updates[-1][0] if updates else None}/{updates[-1][1] if updates else None}, over the total: {len(over)}, "
          f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def _first_lines(result, count: int) -> str:
    return "\n    ".join(result.content[-1].text.splitlines()[:count])


# --- report -----------------------------------------------------------------------------------------------


def report(items: list[dict], results: list[tuple[dict, dict]]) -> None:
    names = [i["name"] for i in items]
    print("\nper file: error rate (WER English, CER Mandarin), detected language, RTF")
    print(f"{'config':10s} " + " ".join(f"{n[:22]:>24s}" for n in names))
    for config, out in results:
        cells = []
        for item, record in zip(items, out["files"], strict=True):
            lang = (record.get("detected") or [record.get("language")])[0] or "-"
            err = error_rate(item, record["text"]) * 100
            cells.append(f"{err:5.1f}% {lang:>3s} {record['wall_s'] / item['duration']:.3f}"
                         + (" T" if record["model"] == "tiny.en" and config["name"] in ("auto", "fast") else "  "))
        print(f"{config['name']:10s} " + " ".join(f"{c:>24s}" for c in cells))
    print("(T: the policy sent this file to tiny.en; RTF includes the policy's detection)")
    print(f"\n{'config':10s} {'load s':>7s} {'RSS MB':>7s} {'EN WER held-out':>16s} {'EN WER tuning':>14s} "
          f"{'ZH CER':>7s} {'detection':>10s} {'detect s':>9s} {'RTF':>6s} {'CPU RTF':>8s}")
    for config, out in results:
        groups: dict[str, list[tuple[int, int]]] = {"held-out": [], "tuning": [], "zh": []}
        right = total = 0
        wall = cpu = duration = 0.0
        detect_times: list[float | None] = []
        for item, record in zip(items, out["files"], strict=True):
            key = "zh" if item["language"] == "zh" else item["set"]
            if item["language"] == "zh":
                reference = han(item["text"])
                groups["zh"].append((edit_distance(reference, han(record["text"])), len(reference)))
            else:
                reference = words(item["text"])
                groups.setdefault(key, []).append((edit_distance(reference, words(record["text"])), len(reference)))
            found = (record.get("detected") or [record.get("language")])[0]
            if out["multilingual"] or config["name"] in ("auto", "fast"):
                total += 1
                right += found == item["language"]
            wall += record["wall_s"]
            cpu += record["cpu_s"]
            duration += item["duration"]
            detect_times.append(record.get("detect_s"))

        def rate(pairs: list[tuple[int, int]]) -> str:
            return f"{sum(e for e, _ in pairs) / max(sum(n for _, n in pairs), 1) * 100:.1f} %" if pairs else "-"

        detection = f"{right}/{total}" if total else "n/a"
        timed = [t for t in detect_times if t is not None]
        detect = f"{sum(timed) / len(timed):.2f}" if timed else "-"
        print(f"{config['name']:10s} {out['load_s']:7.2f} {out['peak_rss_mb']:7d} {rate(groups['held-out']):>16s} "
              f"{rate(groups['tuning']):>14s} {rate(groups['zh']):>7s} {detection:>10s} {detect:>9s} "
              f"{wall / duration:6.3f} {cpu / duration:8.3f}")
    print("(WER and CER pooled over the files of each set; RTF = transcription wall time / audio time over all "
          "files, the policies' detection pass included; CPU RTF = the process's CPU time / audio time, which other "
          "work on the machine does not inflate; 'detect s': a separate detection pass per file, shown for the "
          "multilingual models; tiny.en detects nothing)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--model", action="append", default=[], help="another CTranslate2 Whisper folder to compare")
    parser.add_argument("--skip-long", action="store_true", help="leave out the 3-hour file")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    if shutil.which("flite") is None:
        print("skipped: flite is needed for the held-out voices (apt-get install flite)")
        return
    os.environ["TOOLSUITE_MODELS_DIR"] = str(WORK / "models")  # assembled once here; the workers load it
    from shared import speech_models

    if speech_models.installed(speech_models.BASE):
        began = time.perf_counter()
        speech_models.path(speech_models.BASE)
        print(f"multilingual model assembled from its two parts and verified once: {time.perf_counter() - began:.2f} s")
    items = material()
    print(f"{len(items)} recordings, {sum(i['duration'] for i in items):.0f} s: " +
          ", ".join(f"{i['name']} ({i['language']}, {i['set']}, {i['duration']:.0f} s)" for i in items))
    print(f"threads: {os.environ.get('TOOLSUITE_TRANSCRIBE_THREADS', '1')}; load average at start "
          f"{os.getloadavg()[0]:.1f}")
    configs = [{"name": "tiny.en", "policy": "tiny.en", "load": ["tiny.en"], "only": "tiny.en"},
               {"name": "base", "policy": "base", "load": ["base"], "detect": True, "only": "base"}]
    configs += [{"name": Path(folder).name[:10], "folder": folder, "load": [folder], "detect": True}
                for folder in args.model]
    configs += [{"name": "auto", "policy": "auto", "load": ["base"]},
                {"name": "fast", "policy": "fast", "load": ["base", "tiny.en"]}]
    results = []
    for config in configs:
        began = time.perf_counter()
        out = run_config({**config, "items": items})
        print(f"  {config['name']}: {out['label']}, done in {time.perf_counter() - began:.0f} s")
        results.append((config, out))
    report(items, results)
    print(f"targets: English WER < 8 % with auto (held-out voices); Mandarin CER < 15 %; RTF < 0.3 for base; "
          f"detection right on every file. Load average at end {os.getloadavg()[0]:.1f}\n")
    import anyio

    anyio.run(mcp_part, items, args.skip_long)
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
