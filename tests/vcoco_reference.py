"""A loop-for-loop port of the official V-COCO evaluator (``vsrl_eval.py``, s-gupta/v-coco at 489cc4d):
the test oracle and benchmark baseline for :mod:`pipeline.metrics.vcoco`.

It follows the official code's loops and arrays one by one (float32 boxes and scores, per-image
``argsort()[::-1]``, ``covered`` per image, the global ``argsort()[::-1]``, ``voc_ap``'s loop), reading the
parsed JSON instead of pycocotools (the same lookups: images by id, each image's annotations in file order,
categories in file order). The official code itself is not part of the project; it was run once beside it
for the figures in docs/evaluation.md. One deliberate difference: the detections are grouped by image once
instead of being scanned for every image (the same order; the official scan is quadratic).
"""
from __future__ import annotations

import numpy as np


class Coco:
    """What the official code asks of pycocotools' ``COCO``."""

    def __init__(self, dataset: dict):
        self.dataset = dataset
        self.imgs = {im["id"]: im for im in dataset["images"]}
        self.anns = {}
        self.img_to_anns: dict = {}
        for ann in dataset["annotations"]:
            self.img_to_anns.setdefault(ann["image_id"], []).append(ann)
            self.anns[ann["id"]] = ann

    def cat_ids(self) -> list:
        return [c["id"] for c in self.dataset["categories"]]

    def ann_ids(self, image_id) -> list:
        return [a["id"] for a in self.img_to_anns.get(image_id, [])]


def load_vcoco(content: list) -> list[dict]:
    out = []
    for x in content:
        x = dict(x)
        x["role_object_id"] = np.array(x["role_object_id"]).reshape((len(x["role_name"]), -1)).T
        for j in ("ann_id", "label", "image_id"):
            x[j] = np.array(x[j]).reshape((-1, 1))
        out.append(x)
    return out


def clip(x1, y1, x2, y2, height, width):
    x1 = np.minimum(width - 1.0, np.maximum(0.0, x1))
    y1 = np.minimum(height - 1.0, np.maximum(0.0, y1))
    x2 = np.minimum(width - 1.0, np.maximum(0.0, x2))
    y2 = np.minimum(height - 1.0, np.maximum(0.0, y2))
    return x1, y1, x2, y2


def get_overlap(boxes, ref_box):
    ixmin = np.maximum(boxes[:, 0], ref_box[0])
    iymin = np.maximum(boxes[:, 1], ref_box[1])
    ixmax = np.minimum(boxes[:, 2], ref_box[2])
    iymax = np.minimum(boxes[:, 3], ref_box[3])
    iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
    ih = np.maximum(iymax - iymin + 1.0, 0.0)
    inters = iw * ih
    uni = ((ref_box[2] - ref_box[0] + 1.0) * (ref_box[3] - ref_box[1] + 1.0)
           + (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0) - inters)
    return inters / uni


def voc_ap(rec, prec):
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


class ReferenceEval:
    """``VCOCOeval`` on parsed files: ``vcoco`` the V-COCO list, ``coco`` the instances dict."""

    def __init__(self, vcoco: list, coco: dict):
        self.coco = Coco(coco)
        self.vcoco = load_vcoco(vcoco)
        self.image_ids = np.sort(np.unique(self.vcoco[0]["image_id"]))
        self.actions = [x["action_name"] for x in self.vcoco]
        self.roles = [x["role_name"] for x in self.vcoco]
        self.num_actions = len(self.actions)
        self.cat_to_contiguous = {v: i + 1 for i, v in enumerate(self.coco.cat_ids())}

    def vcocodb(self) -> list[dict]:
        db = []
        for image_id in self.image_ids.tolist():
            entry = dict(self.coco.imgs[image_id])
            self._add_gt(entry)
            db.append(entry)
        return db

    def _add_gt(self, entry: dict) -> None:
        ann_ids = self.coco.ann_ids(entry["id"])
        objs = [self.coco.anns[i] for i in ann_ids]
        valid_objs, valid_ids = [], []
        for i, obj in enumerate(objs):
            if "ignore" in obj and obj["ignore"] == 1:
                continue
            x1, y1 = obj["bbox"][0], obj["bbox"][1]
            x2 = x1 + np.maximum(0.0, obj["bbox"][2] - 1.0)
            y2 = y1 + np.maximum(0.0, obj["bbox"][3] - 1.0)
            x1, y1, x2, y2 = clip(x1, y1, x2, y2, entry["height"], entry["width"])
            if obj["area"] > 0 and x2 > x1 and y2 > y1:
                obj = dict(obj, clean_bbox=[x1, y1, x2, y2])
                valid_objs.append(obj)
                valid_ids.append(ann_ids[i])
        n = len(valid_objs)
        entry["boxes"] = np.zeros((n, 4), dtype=np.float32)
        entry["gt_classes"] = np.zeros(n, dtype=np.int32)
        entry["gt_actions"] = -np.ones((n, self.num_actions), dtype=np.int32)
        entry["gt_role_id"] = -np.ones((n, self.num_actions, 2), dtype=np.int32)
        for ix, obj in enumerate(valid_objs):
            entry["boxes"][ix, :] = obj["clean_bbox"]
            entry["gt_classes"][ix] = self.cat_to_contiguous[obj["category_id"]]
            entry["gt_actions"][ix, :], entry["gt_role_id"][ix, :, :] = self._vsrl(valid_ids[ix], valid_ids)

    def _vsrl(self, ann_id, ann_ids):
        action_id = -np.ones(self.num_actions, dtype=np.int32)
        role_id = -np.ones((self.num_actions, 2), dtype=np.int32)
        if np.where(self.vcoco[0]["ann_id"] == ann_id)[0].size == 0:
            return action_id, role_id
        action_id[:] = 0
        for i, x in enumerate(self.vcoco):
            has_label = np.where(np.logical_and(x["ann_id"] == ann_id, x["label"] == 1))[0]
            if has_label.size > 0:
                action_id[i] = 1
                assert has_label.size == 1
                rids = x["role_object_id"][has_label]
                assert rids[0, 0] == ann_id
                for j in range(1, rids.shape[1]):
                    if rids[0, j] == 0:
                        continue
                    aid = np.where(np.array(ann_ids) == rids[0, j])[0]
                    assert aid.size > 0
                    role_id[i, j - 1] = aid[0]
        return action_id, role_id

    def _collect(self, dets: list[dict]):
        agents = np.empty((0, 4 + self.num_actions), dtype=np.float32)
        roles = np.empty((0, 5 * self.num_actions, 2), dtype=np.float32)
        for det in dets:
            this_agent = np.zeros((1, 4 + self.num_actions), dtype=np.float32)
            this_role = np.zeros((1, 5 * self.num_actions, 2), dtype=np.float32)
            this_agent[0, :4] = det["person_box"]
            for aid in range(self.num_actions):
                for j, rid in enumerate(self.roles[aid]):
                    value = det.get(self.actions[aid] + "_" + rid, np.nan if rid == "agent" else [np.nan] * 5)
                    if rid == "agent":
                        this_agent[0, 4 + aid] = value
                    else:
                        this_role[0, 5 * aid: 5 * aid + 5, j - 1] = value
            agents = np.concatenate((agents, this_agent), axis=0)
            roles = np.concatenate((roles, this_role), axis=0)
        return agents, roles

    def evaluate(self, dets: list[dict]) -> dict:
        """{'agent': [A] float32, 'scenario_1' / 'scenario_2': [A, 2] float32} as the official arrays."""
        db = self.vcocodb()
        by_image: dict = {}
        for det in dets:
            by_image.setdefault(det["image_id"], []).append(det)
        collected = [self._collect(by_image.get(e["id"], [])) for e in db]
        out = {"agent": self._agent(db, collected)}
        for scenario in ("scenario_1", "scenario_2"):
            out[scenario] = self._role(db, collected, scenario)
        return out

    def _gt(self, entry):
        gt_inds = np.where(entry["gt_classes"] == 1)[0]
        gt_actions = entry["gt_actions"][gt_inds]
        return gt_inds, entry["boxes"][gt_inds], gt_actions, np.any(gt_actions == -1, axis=1)

    def _role(self, db, collected, scenario):
        tp = [[[] for _ in range(2)] for _ in range(self.num_actions)]
        fp = [[[] for _ in range(2)] for _ in range(self.num_actions)]
        sc = [[[] for _ in range(2)] for _ in range(self.num_actions)]
        npos = np.zeros(self.num_actions, dtype=np.float32)
        for entry, (pred_agents, pred_roles) in zip(db, collected):
            gt_inds, gt_boxes, gt_actions, ignore = self._gt(entry)
            for aid in range(self.num_actions):
                npos[aid] += np.sum(gt_actions[:, aid] == 1)
            for aid in range(self.num_actions):
                if len(self.roles[aid]) < 2:
                    continue
                for rid in range(len(self.roles[aid]) - 1):
                    covered = np.zeros(gt_boxes.shape[0], dtype=bool)
                    gt_role_inds = entry["gt_role_id"][gt_inds, aid, rid]
                    gt_roles = -np.ones_like(gt_boxes)
                    for j in range(gt_boxes.shape[0]):
                        if gt_role_inds[j] > -1:
                            gt_roles[j] = entry["boxes"][gt_role_inds[j]]
                    agent_boxes = pred_agents[:, :4]
                    role_boxes = pred_roles[:, 5 * aid: 5 * aid + 4, rid]
                    agent_scores = pred_roles[:, 5 * aid + 4, rid]
                    valid = np.where(np.isnan(agent_scores) == False)[0]  # noqa: E712 (the official line)
                    agent_scores, agent_boxes, role_boxes = agent_scores[valid], agent_boxes[valid], role_boxes[valid]
                    for j in agent_scores.argsort()[::-1]:
                        overlaps = get_overlap(gt_boxes, agent_boxes[j, :])
                        jmax, ovmax = overlaps.argmax(), overlaps.max()
                        if ignore[jmax]:
                            continue
                        if np.all(gt_roles[jmax, :] == -1):
                            if scenario == "scenario_1":
                                empty = np.all(role_boxes[j, :] == 0.0) or np.all(np.isnan(role_boxes[j, :]))
                                ov_role = 1.0 if empty else 0.0
                            else:
                                ov_role = 1.0
                        else:
                            ov_role = get_overlap(gt_roles[jmax, :].reshape((1, 4)), role_boxes[j, :])
                        sc[aid][rid].append(agent_scores[j])
                        if gt_actions[jmax, aid] == 1 and ovmax >= 0.5 and ov_role >= 0.5:
                            if covered[jmax]:
                                fp[aid][rid].append(1), tp[aid][rid].append(0)
                            else:
                                fp[aid][rid].append(0), tp[aid][rid].append(1)
                                covered[jmax] = True
                        else:
                            fp[aid][rid].append(1), tp[aid][rid].append(0)
        role_ap = np.full((self.num_actions, 2), np.nan, dtype=np.float32)
        for aid in range(self.num_actions):
            if len(self.roles[aid]) < 2:
                continue
            for rid in range(len(self.roles[aid]) - 1):
                role_ap[aid, rid] = self._ap(fp[aid][rid], tp[aid][rid], sc[aid][rid], npos[aid])
        return role_ap

    def _agent(self, db, collected):
        tp = [[] for _ in range(self.num_actions)]
        fp = [[] for _ in range(self.num_actions)]
        sc = [[] for _ in range(self.num_actions)]
        npos = np.zeros(self.num_actions, dtype=np.float32)
        for entry, (pred_agents, _) in zip(db, collected):
            _, gt_boxes, gt_actions, ignore = self._gt(entry)
            for aid in range(self.num_actions):
                npos[aid] += np.sum(gt_actions[:, aid] == 1)
            for aid in range(self.num_actions):
                covered = np.zeros(gt_boxes.shape[0], dtype=bool)
                agent_scores = pred_agents[:, 4 + aid]
                agent_boxes = pred_agents[:, :4]
                valid = np.where(np.isnan(agent_scores) == False)[0]  # noqa: E712 (the official line)
                agent_scores, agent_boxes = agent_scores[valid], agent_boxes[valid, :]
                for j in agent_scores.argsort()[::-1]:
                    overlaps = get_overlap(gt_boxes, agent_boxes[j, :])
                    jmax, ovmax = overlaps.argmax(), overlaps.max()
                    if ignore[jmax]:
                        continue
                    sc[aid].append(agent_scores[j])
                    if gt_actions[jmax, aid] == 1 and ovmax >= 0.5:
                        if covered[jmax]:
                            fp[aid].append(1), tp[aid].append(0)
                        else:
                            fp[aid].append(0), tp[aid].append(1)
                            covered[jmax] = True
                    else:
                        fp[aid].append(1), tp[aid].append(0)
        agent_ap = np.zeros(self.num_actions, dtype=np.float32)
        for aid in range(self.num_actions):
            agent_ap[aid] = self._ap(fp[aid], tp[aid], sc[aid], npos[aid])
        return agent_ap

    @staticmethod
    def _ap(fp, tp, sc, npos):
        # where the official code stops (an assertion on an empty or NaN recall), the project's rules
        if npos == 0:
            return np.nan
        if not sc:
            return 0.0
        a_fp, a_tp, a_sc = (np.array(x, dtype=np.float32) for x in (fp, tp, sc))
        idx = a_sc.argsort()[::-1]
        a_fp, a_tp = np.cumsum(a_fp[idx]), np.cumsum(a_tp[idx])
        rec = a_tp / float(npos)
        assert np.amax(rec) <= 1
        prec = a_tp / np.maximum(a_tp + a_fp, np.finfo(np.float64).eps)
        return voc_ap(rec, prec)
