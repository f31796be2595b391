"""The layout of the MC_Maze data set: its trial columns, behaviour, events and conditions.

One place for what the loader requires of an MC_Maze file and for what the
behaviour alignment reads from its trials by default.
"""

MC_MAZE_TRIAL_COLUMNS = (
    "trial_type",
    "trial_version",
    "maze_id",
    "success",
    "target_on_time",
    "go_cue_time",
    "move_onset_time",
    "split",
)
"""Trial columns that :func:`load_mc_maze` requires."""

MC_MAZE_BEHAVIOUR = ("hand_pos", "hand_vel", "cursor_pos", "eye_pos")
"""Behavioural series of the MC_Maze training files."""

MC_MAZE_EVENTS = (
    ("start_time", "before_target"),
    ("target_on_time", "delay"),
    ("go_cue_time", "reaction"),
    ("move_onset_time", "movement"),
    ("move_end_time", "after_movement"),
)
"""Events of a MC_Maze trial, in order, with the phase each one starts."""

MC_MAZE_CONDITIONS = (
    "trial_type",
    "trial_version",
    "maze_id",
    "num_targets",
    "num_barriers",
    "active_target",
    "success",
    "split",
)
"""Trial columns of MC_Maze copied onto the bins when ``conditions=None``."""
