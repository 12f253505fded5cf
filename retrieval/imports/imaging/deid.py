"""De-identification of DICOM files under a pseudonym (DICOM PS3.15 Annex E)."""

from __future__ import annotations

import io

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from retrieval.imports.imaging.dicom import check_structure, ensure_transfer_syntax, read_dataset
from retrieval.imports.imaging.errors import ImageDecodeError, short_reason

# DICOM PS3.15 Annex E Table E.1-1, Basic Application Level Confidentiality Profile with
# the Retain UIDs option (the platform groups series by UID; UIDs carry no identity when
# issued by a root, and the caller keeps them only inside the platform) and the Retain
# Patient Characteristics option (sex, age, size and weight are study covariates: paper
# 000 classifies NLST CT by weight).

#: Attributes emptied (kept as zero-length, as the profile's "Z" for Type 2 attributes).
BLANKED_KEYWORDS: tuple[str, ...] = (
    "PatientBirthDate",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ContentCreatorName",
    "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
)

#: Attributes removed wherever they occur, including inside sequences.
REMOVED_KEYWORDS: tuple[str, ...] = (
    "AcquisitionComments",
    "AcquisitionContextSequence",
    "AcquisitionDate",
    "AcquisitionDateTime",
    "AcquisitionDeviceProcessingDescription",
    "AcquisitionProtocolDescription",
    "AcquisitionTime",
    "ActualHumanPerformersSequence",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDate",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingTime",
    "Allergies",
    "Arbitrary",
    "AuthorObserverSequence",
    "BranchOfService",
    "CassetteID",
    "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription",
    "ContentCreatorIdentificationCodeSequence",
    "ContentDate",
    "ContentTime",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CurveDate",
    "CurveTime",
    "CustodialOrganizationSequence",
    "DataSetTrailingPadding",
    "DerivationDescription",
    "DetectorID",
    "DeviceSerialNumber",
    "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription",
    "DistributionAddress",
    "DistributionName",
    "EthnicGroup",
    "FrameComments",
    "GantryID",
    "GeneratorID",
    "HumanPerformerName",
    "HumanPerformerOrganization",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "Impressions",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer",
    "InterpretationRecorder",
    "InterpretationText",
    "InterpretationTranscriber",
    "IssuerOfAdmissionID",
    "IssuerOfPatientID",
    "IssuerOfServiceEpisodeID",
    "LastMenstrualDate",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "ModifiedImageDescription",
    "ModifyingDeviceID",
    "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OriginalAttributesSequence",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "OverlayDate",
    "OverlayTime",
    "ParticipantSequence",
    "PatientAddress",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence",
    "PatientReligiousPreference",
    "PatientState",
    "PatientTelecomInformation",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonIdentificationCodeSequence",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PlateID",
    "PreMedication",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForStudy",
    "ReasonForTheImagingServiceRequest",
    "ReferencedDigitalSignatureSequence",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceMACSequence",
    "ReferencedStudySequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ResultsDistributionListSequence",
    "ResultsIDIssuer",
    "ReviewerName",
    "ScheduledHumanPerformersSequence",
    "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepEndDate",
    "ScheduledProcedureStepEndTime",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "SeriesDate",
    "SeriesDescription",
    "SeriesTime",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SpecialNeeds",
    "StationName",
    "StudyComments",
    "StudyDescription",
    "StudyIDIssuer",
    "TextComments",
    "TextString",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingOrganization",
    "VisitComments",
)

#: File meta elements naming the sending system.
_REMOVED_META_KEYWORDS = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
)

DEIDENTIFICATION_METHOD = (
    "DICOM PS3.15 E.1 Basic Profile",
    "Retain UIDs and Patient Characteristics",
    "Private tags, curves, overlays removed",
)

# CID 7050 De-identification Method codes.
_DEID_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113110", "Retain UIDs Option"),
)


def deidentify_dicom(data: bytes, *, pseudo_id: str) -> bytes:
    """The DICOM with identifying attributes removed or blanked and Patient ID/Name set to
    `pseudo_id`; private tags, curves and overlays removed; pixel data byte-identical.

    Burned-in text in the pixels is not touched (check Burned In Annotation upstream).
    """
    pseudo_id = _check_pseudo_id(pseudo_id)
    ds = read_dataset(data, stop_before_pixels=False)
    try:
        return _deidentify_dataset(ds, pseudo_id)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError(f"cannot de-identify this DICOM: {short_reason(exc)}") from exc


def _check_pseudo_id(pseudo_id: str) -> str:
    if not isinstance(pseudo_id, str) or not pseudo_id.strip():
        raise ValueError("pseudo_id must be a non-empty string")
    pseudo_id = pseudo_id.strip()
    if len(pseudo_id) > 64 or "\\" in pseudo_id or any(ord(c) < 32 for c in pseudo_id):
        raise ValueError("pseudo_id must be at most 64 characters without backslashes or control characters")
    return pseudo_id


def _deidentify_dataset(ds, pseudo_id: str) -> bytes:
    ensure_transfer_syntax(ds)
    removed_tags = {tag_for_keyword(k) for k in REMOVED_KEYWORDS} - {None}
    blanked_tags = {tag_for_keyword(k) for k in BLANKED_KEYWORDS} - {None}
    # Inside sequences a patient's name or ID has no pseudonym to take: remove it.
    nested_removed = removed_tags | {tag_for_keyword("PatientName"), tag_for_keyword("PatientID")}

    def clean(dataset, nested: bool) -> None:
        for elem in list(dataset):
            tag = elem.tag
            group = tag >> 16
            if (
                tag in (nested_removed if nested else removed_tags)
                or 0x5000 <= group <= 0x50FF  # curves
                or 0x6000 <= group <= 0x60FF  # overlays (may carry burned-in text)
            ):
                del dataset[tag]
                continue
            if tag in blanked_tags:
                elem.value = None if elem.VR == "SQ" else ""
                continue
            if elem.VR == "SQ" and elem.value:
                for item in elem.value:
                    clean(item, nested=True)

    ds.remove_private_tags()
    clean(ds, nested=False)
    ds.PatientName = pseudo_id
    ds.PatientID = pseudo_id
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
    codes = []
    for value, meaning in _DEID_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(codes)
    ds.LongitudinalTemporalInformationModified = "REMOVED"

    meta = ds.file_meta
    for keyword in _REMOVED_META_KEYWORDS:
        if keyword in meta:
            delattr(meta, keyword)
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" not in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    check_structure(ds)  # bounded depth and size before the writer recurses (read_dataset checked the input)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()
