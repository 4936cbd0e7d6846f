"""The per-photo scripts' command line: odd names are paths, settings JSON, an optional input absent."""

import pytest

from charlora.command_line import parse_args

MASK = dict(files=["image", "mask", "record"], settings=["masks", "strict"], optional_files=["user-mask"])


def test_names_that_look_like_options_or_syntax_are_paths():
    args = parse_args(
        "Rule mask.",
        **MASK,
        argv=[
            "--id=-x $HOME; 'q'",
            '--masks={"method": "rembg", "rembg": {"model": "m.onnx"}}',
            "--strict=false",
            "--log=logs/-x.log",
            "--user-mask",
            "photos/masks/-x [1].png",
            "--",
            "-x.png",
            "-x\tmask.png",
            "-x\nrec.json",
        ],
    )
    assert args.id == "-x $HOME; 'q'" and args.log == "logs/-x.log"
    assert args.masks == {"method": "rembg", "rembg": {"model": "m.onnx"}} and args.strict is False
    assert args.user_mask == "photos/masks/-x [1].png"
    assert (args.image, args.mask, args.record) == ("-x.png", "-x\tmask.png", "-x\nrec.json")


def test_an_absent_optional_input_is_none():
    args = parse_args(
        "Rule mask.", **MASK, argv=["--masks={}", "--strict=true", "--log=l", "--user-mask", "--", "a", "b", "c"]
    )
    assert args.user_mask is None and args.strict is True and args.id is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--masks={}", "--strict=true", "--log=l", "--", "a", "b"],  # a file missing
        ["--masks=not json", "--strict=true", "--log=l", "--", "a", "b", "c"],  # a setting not JSON
        ["--masks={}", "--strict=true", "--log=l", "--user-mask", "m1", "m2", "--", "a", "b", "c"],  # two masks
    ],
)
def test_a_wrong_command_line_stops_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args("Rule mask.", **MASK, argv=argv)
    assert stop.value.code == 2 and "usage:" in capsys.readouterr().err
