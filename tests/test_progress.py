"""training.progress: a tqdm bar with an ETA in a terminal; one plain line per epoch
(the one logs, tests and notebooks read) when the output is not a terminal."""
import io
import re

from training.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_nothing_is_drawn_and_close_gives_the_plain_line():
    out = io.StringIO()
    bar = ProgressBar(36, desc="epoch 3/15", stream=out)
    assert not bar.live
    for step in range(1, 37):
        bar.update(step, loss="1.7043", err="68.60%")
    line = bar.close(loss="1.7043", err="68.60%", val_err="51.20%", lr="0.02",
                     **{"img/s": "1776"})
    assert out.getvalue() == ""
    assert re.fullmatch(r"epoch 3/15 \[#{24}\] 36/36 \| loss 1\.7043 \| err 68\.60% \| "
                        r"val_err 51\.20% \| lr 0\.02 \| img/s 1776 \| \d+s", line), line


def test_in_a_terminal_the_bar_shows_the_time_left_and_ends_with_the_epoch_figures():
    out = Terminal()
    bar = ProgressBar(10, desc="epoch 1/2", stream=out, min_interval=0)
    assert bar.live
    for step in range(1, 6):
        bar.update(step, loss="2.0000")
    drawn = out.getvalue().split("\r")[-1]
    # elapsed < remaining, then the loop's statistics
    assert re.search(r"epoch 1/2: +50%.* 5/10 \[\d\d:\d\d<\d\d:\d\d, loss 2\.0000\]", drawn), drawn
    for step in range(6, 11):
        bar.update(step, loss="1.5000")
    line = bar.close(loss="1.5", val_err="40%")
    final = out.getvalue().split("\r")[-1]
    assert final.endswith("\n") and "10/10" in final and "loss 1.5 | val_err 40%" in final
    assert line.startswith("epoch 1/2 [") and "val_err 40%" in line


def test_a_resumed_epoch_counts_from_its_saved_step():
    out = Terminal()
    bar = ProgressBar(10, desc="epoch 2/2", stream=out, min_interval=0)
    bar.update(7, loss="1.0")                      # steps 1-6 were done before the resume
    assert " 7/10 " in out.getvalue().split("\r")[-1]
    assert bar.close(loss="1.0").startswith("epoch 2/2 [" + "#" * 17)
