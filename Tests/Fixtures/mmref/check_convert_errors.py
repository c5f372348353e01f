"""scripts/convert_pth.py on bad input: every failure is one stderr line with status 1, no input is replaced, no
temporary is left behind, and no code from a hostile pickle runs. Needs torch (no CI without it):

    PYTHONPATH=../shared/mmref ~/.mmref/bin/python Tests/Fixtures/mmref/check_convert_errors.py
"""
import os
import pickle
import subprocess
import sys
import tempfile

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "convert_pth.py")


class Hostile:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def run(cwd, *args):
    p = subprocess.run([sys.executable, SCRIPT, *args, "--allow-unknown"], cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stderr.strip().splitlines()


def main():
    with tempfile.TemporaryDirectory() as d:
        torch.save({"state_dict": {"backbone.conv1.weight": torch.randn(8, 3, 7, 7)}}, os.path.join(d, "x.pth"))
        with open(os.path.join(d, "t.pth"), "w") as f:
            f.write("hello")
        with open(os.path.join(d, "evil.pth"), "wb") as f:
            pickle.dump(Hostile(), f)
        size = os.path.getsize(os.path.join(d, "x.pth"))
        cases = [(("x.pth", "x.pth"), "is the input checkpoint"), (("x.pth", "./x.pth"), "is the input checkpoint"),
                 (("x.pth", "."), "is a folder"), (("x.pth", "nodir/o.safetensors"), "does not exist"),
                 (("t.pth", "o.safetensors"), "not a PyTorch checkpoint"),
                 (("evil.pth", "o.safetensors"), "nothing from it was run")]
        for args, needle in cases:
            code, lines = run(d, *args)
            assert code == 1 and len(lines) == 1 and needle in lines[0], (args, code, lines)
            assert not any("weights_only=False" in l for l in lines), lines
        assert os.path.getsize(os.path.join(d, "x.pth")) == size, "the input was replaced"
        assert not os.path.exists(os.path.join(d, "PWNED")), "code from the pickle ran"
        assert not [n for n in os.listdir(d) if ".tmp" in n], os.listdir(d)
        code, lines = run(d, "x.pth", "o.safetensors")
        assert code == 0 and os.path.exists(os.path.join(d, "o.safetensors")), (code, lines)
    print("convert_pth.py error cases: all one line, nothing replaced, nothing run")


if __name__ == "__main__":
    main()
