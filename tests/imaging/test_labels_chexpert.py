"""CheXpert / MIMIC-CXR-JPG: 1, 0 and -1 (uncertain) are kept; blank is missing, not 0."""

import pytest

from retrieval.imports.labels import LabelTableError, parse_label_table

CHEXPERT = b"""\
Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,\
Lung Opacity,Pleural Effusion,Support Devices
CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,1.0
CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,PA,,-1.0,-1,1.0,0.0,
CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,0,1,2,
"""


def test_uncertain_negative_positive_and_blank_are_distinct():
    rows, problems = parse_label_table(CHEXPERT, "chexpert")
    first, second, third = rows
    assert first.labels == {"No Finding": 1.0, "Support Devices": 1.0, "Sex": "Female", "Age": 68.0}
    assert second.labels["Enlarged Cardiomediastinum"] == -1.0
    assert second.labels["Cardiomegaly"] == -1.0
    assert second.labels["Lung Opacity"] == 1.0
    assert second.labels["Pleural Effusion"] == 0.0
    assert "No Finding" not in second.labels  # blank: not mentioned, so missing
    assert "Support Devices" not in second.labels
    assert third.labels["Cardiomegaly"] == 0.0
    assert problems == [(4, problems[0][1])]
    assert "Pleural Effusion value '2' is not 1, 0, -1 or blank" in problems[0][1]


def test_patient_from_the_path_and_view_from_ap_pa():
    rows, _ = parse_label_table(CHEXPERT, "chexpert")
    assert [r.patient_id for r in rows] == ["patient00001", "patient00002", "patient00002"]
    assert [r.view_position for r in rows] == ["AP", "PA", "LATERAL"]


def test_mimic_subject_id_and_dicom_id():
    data = (
        b"dicom_id,subject_id,study_id,ViewPosition,Atelectasis,Edema,Pneumothorax\n"
        b"02aa804e-bde0afdd,10000032,50414267,PA,,1.0,0.0\n"
        b"174413ec-4ec4c1f7,10000032,50414267,LATERAL,-1.0,,\n"
    )
    rows, problems = parse_label_table(data, "chexpert")
    assert problems == []
    assert [r.key for r in rows] == ["02aa804e-bde0afdd", "174413ec-4ec4c1f7"]
    assert {r.patient_id for r in rows} == {"10000032"}
    assert rows[0].labels == {"Edema": 1.0, "Pneumothorax": 0.0}
    assert rows[1].labels == {"Atelectasis": -1.0}
    assert rows[0].view_position == "PA"


def test_duplicate_paths_are_reported():
    data = b"Path,Edema\na.jpg,1\na.jpg,0\n"
    rows, problems = parse_label_table(data, "chexpert")
    assert len(rows) == 1 and problems == [(3, "a.jpg: duplicate of line 2 (row ignored)")]


def test_table_without_observation_columns_is_refused():
    with pytest.raises(LabelTableError, match="no observation columns.*columns found: Path, Sex"):
        parse_label_table(b"Path,Sex\na.jpg,Male\n", "chexpert")


def test_table_without_a_path_column_is_refused():
    with pytest.raises(LabelTableError, match="'Path'.*columns found: image_name, Edema"):
        parse_label_table(b"image_name,Edema\na.jpg,1\n", "chexpert")
    rows, _ = parse_label_table(b"image_name,Edema\na.jpg,1\n", "chexpert", filename_column="image_name")
    assert rows[0].labels == {"Edema": 1.0}
