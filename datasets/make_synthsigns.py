"""Write the built-in procedural speed-limit scenes to disk; the same as `msgf data synth`.

    python datasets/make_synthsigns.py --out DIR --num 2000 --size 960x1280 --seed 0 [--split train val test]
"""
import sys

from msgf.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "synth", *sys.argv[1:]]))
