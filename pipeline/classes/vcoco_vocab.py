"""V-COCO's facts: its 26 actions, their roles and the COCO objects each role may take, and the prompts of
the classes the ``vcoco`` adapter makes of them.

The actions, role names (``agent`` first, in the official files' order) and ``include`` lists are those of
the official ``vcoco_{train,val,test}.json`` (s-gupta/v-coco at 489cc4d): a role whose list is empty takes
any object. The adapter reads them from the files themselves (:mod:`pipeline.datasets.vcoco`); this module
gives the prompts, and the vocabulary the synthetic demo writes (:mod:`pipeline.demo.vcoco`).

**A class is what one key of the official results format scores**: ``<action>_<role>`` for every
(action, role) pair (25: 22 actions with one role, ``hit``, ``eat`` and ``cut`` with two) and
``<action>_agent`` for the four actions without a role (``stand``, ``walk``, ``run``, ``smile``): 29
classes. Their prompts are written for them (below), since a role (``obj``, ``instr``) is no object name.
"""
from __future__ import annotations

# action -> its roles after "agent", in the official files' order
ROLES: dict[str, tuple[str, ...]] = {
    "hold": ("obj",), "stand": (), "sit": ("instr",), "ride": ("instr",), "walk": (), "look": ("obj",),
    "hit": ("instr", "obj"), "eat": ("obj", "instr"), "jump": ("instr",), "lay": ("instr",),
    "talk_on_phone": ("instr",), "carry": ("obj",), "throw": ("obj",), "catch": ("obj",), "cut": ("instr", "obj"),
    "run": (), "work_on_computer": ("instr",), "ski": ("instr",), "surf": ("instr",), "skateboard": ("instr",),
    "smile": (), "drink": ("instr",), "kick": ("obj",), "point": ("instr",), "read": ("obj",),
    "snowboard": ("instr",),
}

# (action, role) -> the COCO object names the role may take (the official ``include``; absent = any object)
INCLUDE: dict[tuple[str, str], tuple[str, ...]] = {
    ("sit", "instr"): ("bicycle", "motorcycle", "horse", "elephant", "bench", "chair", "couch", "bed", "toilet",
                       "dining table", "suitcase", "handbag", "backpack"),
    ("ride", "instr"): ("bicycle", "motorcycle", "bus", "truck", "boat", "train", "airplane", "car", "horse",
                        "elephant"),
    ("hit", "instr"): ("tennis racket", "baseball bat"), ("hit", "obj"): ("sports ball",),
    ("eat", "obj"): ("banana", "apple", "sandwich", "orange", "carrot", "broccoli", "hot dog", "pizza", "cake",
                     "donut"),
    ("eat", "instr"): ("fork", "knife", "spoon"),
    ("jump", "instr"): ("snowboard", "skis", "skateboard", "surfboard"),
    ("lay", "instr"): ("bench", "dining table", "toilet", "bed", "couch", "chair"),
    ("talk_on_phone", "instr"): ("cell phone",), ("throw", "obj"): ("sports ball", "frisbee"),
    ("catch", "obj"): ("sports ball", "frisbee"), ("cut", "instr"): ("scissors", "fork", "knife"),
    ("work_on_computer", "instr"): ("laptop",), ("ski", "instr"): ("skis",), ("surf", "instr"): ("surfboard",),
    ("skateboard", "instr"): ("skateboard",), ("drink", "instr"): ("wine glass", "bottle", "cup", "bowl"),
    ("kick", "obj"): ("sports ball",), ("read", "obj"): ("book",), ("snowboard", "instr"): ("snowboard",),
}

VERB_ING: dict[str, str] = {
    "hold": "holding", "stand": "standing", "sit": "sitting", "ride": "riding", "walk": "walking",
    "look": "looking", "hit": "hitting", "eat": "eating", "jump": "jumping", "lay": "lying",
    "talk_on_phone": "talking on the phone", "carry": "carrying", "throw": "throwing", "catch": "catching",
    "cut": "cutting", "run": "running", "work_on_computer": "working on a computer", "ski": "skiing",
    "surf": "surfing", "skateboard": "skateboarding", "smile": "smiling", "drink": "drinking", "kick": "kicking",
    "point": "pointing", "read": "reading", "snowboard": "snowboarding",
}

# class name (the results key it scores) -> its prompt
PROMPTS: dict[str, str] = {
    "hold_obj": "a person holding an object", "stand_agent": "a person standing",
    "sit_instr": "a person sitting on a chair, a bench, a bicycle or a horse",
    "ride_instr": "a person riding a bicycle, a motorcycle, a horse or a vehicle", "walk_agent": "a person walking",
    "look_obj": "a person looking at something", "hit_instr": "a person hitting with a racket or a bat",
    "hit_obj": "a person hitting a ball", "eat_obj": "a person eating food",
    "eat_instr": "a person eating with a fork, a knife or a spoon",
    "jump_instr": "a person jumping on a skateboard, skis, a snowboard or a surfboard",
    "lay_instr": "a person lying on a bed, a couch or a bench",
    "talk_on_phone_instr": "a person talking on a cell phone", "carry_obj": "a person carrying an object",
    "throw_obj": "a person throwing a ball or a frisbee", "catch_obj": "a person catching a ball or a frisbee",
    "cut_instr": "a person cutting with a knife or scissors", "cut_obj": "a person cutting food or an object",
    "run_agent": "a person running", "work_on_computer_instr": "a person working on a laptop",
    "ski_instr": "a person skiing", "surf_instr": "a person surfing on a surfboard",
    "skateboard_instr": "a person riding a skateboard", "smile_agent": "a person smiling",
    "drink_instr": "a person drinking from a cup, a glass or a bottle", "kick_obj": "a person kicking a ball",
    "point_instr": "a person pointing at something", "read_obj": "a person reading a book",
    "snowboard_instr": "a person snowboarding",
}


def class_name(action: str, role: str) -> str:
    """The class of an (action, role): the key of the official results format it scores."""
    return f"{action}_{role}"


def prompt(action: str, role: str) -> str:
    """The class's prompt: written for V-COCO's 29 classes, a plain sentence for any other action."""
    if class_name(action, role) in PROMPTS:
        return PROMPTS[class_name(action, role)]
    what = {"agent": "", "obj": " an object", "instr": " with an instrument"}.get(role, f" ({role})")
    return f"a person {VERB_ING.get(action, action.replace('_', ' '))}{what}"
