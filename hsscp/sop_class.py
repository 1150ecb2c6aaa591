"""SOP Classes hsscp serves, generated from pydicom's UID dictionary.

Every Storage SOP Class pydicom knows (retired ones included, so old modalities
can still send), the few newer ones pynetdicom knows that the installed pydicom
may not, and Verification are module attributes, named like pynetdicom names
them: the PS3.6 keyword (``CTImageStorage``, ``Verification``) and, for the
non-storage classes, the pynetdicom 1.x ``<keyword>SOPClass`` alias
(``VerificationSOPClass``). :func:`register_uid` adds private ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from keyword import iskeyword

from pydicom import config
from pydicom.uid import UID_dictionary

from hsscp.service_class import (
    NonPatientObjectStorageServiceClass,
    ServiceClass,
    StorageServiceClass,
    VerificationServiceClass,
)
from hsscp.uid import NEWER_UIDS, VERIFICATION_SOP_CLASS, KnownUID, newer_uids

# Storage classes newer than some pydicom releases, named by hsscp.uid.NEWER_UIDS.
NEWER_STORAGE_CLASSES: frozenset[str] = frozenset(
    uid for uid, (_, kind, _) in NEWER_UIDS.items() if kind == "SOP Class"
)

# Storage classes of the Non-Patient Object Storage service (PS3.4 GG), as pynetdicom lists them.
NON_PATIENT_OBJECT_CLASSES: frozenset[str] = frozenset({
    "1.2.840.10008.5.1.4.38.1",  # Hanging Protocol Storage
    "1.2.840.10008.5.1.4.39.1",  # Color Palette Storage
    "1.2.840.10008.5.1.4.43.1",  # Generic Implant Template Storage
    "1.2.840.10008.5.1.4.44.1",  # Implant Assembly Template Storage
    "1.2.840.10008.5.1.4.45.1",  # Implant Template Group Storage
    "1.2.840.10008.5.1.4.1.1.200.1",  # CT Defined Procedure Protocol Storage
    "1.2.840.10008.5.1.4.1.1.200.3",  # Protocol Approval Storage
    "1.2.840.10008.5.1.4.1.1.200.7",  # XA Defined Procedure Protocol Storage
    "1.2.840.10008.5.1.4.1.1.201.1",  # Inventory Storage
})


# The 120 classes of StoragePresentationContexts: pynetdicom's pick, in its order (sorted as
# strings), so that code written for pynetdicom finds the same contexts. 120 leave room for
# Verification and a few more within the 128 contexts an association may propose.
COMMON_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.1.27",  # StoredPrintStorage
    "1.2.840.10008.5.1.1.29",  # HardcopyGrayscaleImageStorage
    "1.2.840.10008.5.1.1.30",  # HardcopyColorImageStorage
    "1.2.840.10008.5.1.4.1.1.1",  # ComputedRadiographyImageStorage
    "1.2.840.10008.5.1.4.1.1.1.1",  # DigitalXRayImageStorageForPresentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DigitalXRayImageStorageForProcessing
    "1.2.840.10008.5.1.4.1.1.1.2",  # DigitalMammographyXRayImageStorageForPresentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # DigitalMammographyXRayImageStorageForProcessing
    "1.2.840.10008.5.1.4.1.1.1.3",  # DigitalIntraOralXRayImageStorageForPresentation
    "1.2.840.10008.5.1.4.1.1.1.3.1",  # DigitalIntraOralXRayImageStorageForProcessing
    "1.2.840.10008.5.1.4.1.1.10",  # StandaloneModalityLUTStorage
    "1.2.840.10008.5.1.4.1.1.104.1",  # EncapsulatedPDFStorage
    "1.2.840.10008.5.1.4.1.1.104.2",  # EncapsulatedCDAStorage
    "1.2.840.10008.5.1.4.1.1.11",  # StandaloneVOILUTStorage
    "1.2.840.10008.5.1.4.1.1.11.1",  # GrayscaleSoftcopyPresentationStateStorage
    "1.2.840.10008.5.1.4.1.1.11.2",  # ColorSoftcopyPresentationStateStorage
    "1.2.840.10008.5.1.4.1.1.11.3",  # PseudoColorSoftcopyPresentationStateStorage
    "1.2.840.10008.5.1.4.1.1.11.4",  # BlendingSoftcopyPresentationStateStorage
    "1.2.840.10008.5.1.4.1.1.11.5",  # XAXRFGrayscaleSoftcopyPresentationStateStorage
    "1.2.840.10008.5.1.4.1.1.12.1",  # XRayAngiographicImageStorage
    "1.2.840.10008.5.1.4.1.1.12.1.1",  # EnhancedXAImageStorage
    "1.2.840.10008.5.1.4.1.1.12.2",  # XRayRadiofluoroscopicImageStorage
    "1.2.840.10008.5.1.4.1.1.12.2.1",  # EnhancedXRFImageStorage
    "1.2.840.10008.5.1.4.1.1.12.3",  # XRayAngiographicBiPlaneImageStorage
    "1.2.840.10008.5.1.4.1.1.128",  # PositronEmissionTomographyImageStorage
    "1.2.840.10008.5.1.4.1.1.128.1",  # LegacyConvertedEnhancedPETImageStorage
    "1.2.840.10008.5.1.4.1.1.129",  # StandalonePETCurveStorage
    "1.2.840.10008.5.1.4.1.1.13.1.1",  # XRay3DAngiographicImageStorage
    "1.2.840.10008.5.1.4.1.1.13.1.2",  # XRay3DCraniofacialImageStorage
    "1.2.840.10008.5.1.4.1.1.13.1.3",  # BreastTomosynthesisImageStorage
    "1.2.840.10008.5.1.4.1.1.130",  # EnhancedPETImageStorage
    "1.2.840.10008.5.1.4.1.1.131",  # BasicStructuredDisplayStorage
    "1.2.840.10008.5.1.4.1.1.14.1",  # IntravascularOpticalCoherenceTomographyImageStorageForPresentation
    "1.2.840.10008.5.1.4.1.1.14.2",  # IntravascularOpticalCoherenceTomographyImageStorageForProcessing
    "1.2.840.10008.5.1.4.1.1.2",  # CTImageStorage
    "1.2.840.10008.5.1.4.1.1.2.1",  # EnhancedCTImageStorage
    "1.2.840.10008.5.1.4.1.1.2.2",  # LegacyConvertedEnhancedCTImageStorage
    "1.2.840.10008.5.1.4.1.1.20",  # NuclearMedicineImageStorage
    "1.2.840.10008.5.1.4.1.1.3",  # UltrasoundMultiFrameImageStorageRetired
    "1.2.840.10008.5.1.4.1.1.3.1",  # UltrasoundMultiFrameImageStorage
    "1.2.840.10008.5.1.4.1.1.4",  # MRImageStorage
    "1.2.840.10008.5.1.4.1.1.4.1",  # EnhancedMRImageStorage
    "1.2.840.10008.5.1.4.1.1.4.2",  # MRSpectroscopyStorage
    "1.2.840.10008.5.1.4.1.1.4.3",  # EnhancedMRColorImageStorage
    "1.2.840.10008.5.1.4.1.1.4.4",  # LegacyConvertedEnhancedMRImageStorage
    "1.2.840.10008.5.1.4.1.1.481.1",  # RTImageStorage
    "1.2.840.10008.5.1.4.1.1.481.2",  # RTDoseStorage
    "1.2.840.10008.5.1.4.1.1.481.3",  # RTStructureSetStorage
    "1.2.840.10008.5.1.4.1.1.481.4",  # RTBeamsTreatmentRecordStorage
    "1.2.840.10008.5.1.4.1.1.481.5",  # RTPlanStorage
    "1.2.840.10008.5.1.4.1.1.481.6",  # RTBrachyTreatmentRecordStorage
    "1.2.840.10008.5.1.4.1.1.481.7",  # RTTreatmentSummaryRecordStorage
    "1.2.840.10008.5.1.4.1.1.481.8",  # RTIonPlanStorage
    "1.2.840.10008.5.1.4.1.1.481.9",  # RTIonBeamsTreatmentRecordStorage
    "1.2.840.10008.5.1.4.1.1.5",  # NuclearMedicineImageStorageRetired
    "1.2.840.10008.5.1.4.1.1.6",  # UltrasoundImageStorageRetired
    "1.2.840.10008.5.1.4.1.1.6.1",  # UltrasoundImageStorage
    "1.2.840.10008.5.1.4.1.1.6.2",  # EnhancedUSVolumeStorage
    "1.2.840.10008.5.1.4.1.1.66",  # RawDataStorage
    "1.2.840.10008.5.1.4.1.1.66.1",  # SpatialRegistrationStorage
    "1.2.840.10008.5.1.4.1.1.66.2",  # SpatialFiducialsStorage
    "1.2.840.10008.5.1.4.1.1.66.3",  # DeformableSpatialRegistrationStorage
    "1.2.840.10008.5.1.4.1.1.66.4",  # SegmentationStorage
    "1.2.840.10008.5.1.4.1.1.66.5",  # SurfaceSegmentationStorage
    "1.2.840.10008.5.1.4.1.1.67",  # RealWorldValueMappingStorage
    "1.2.840.10008.5.1.4.1.1.68.1",  # SurfaceScanMeshStorage
    "1.2.840.10008.5.1.4.1.1.68.2",  # SurfaceScanPointCloudStorage
    "1.2.840.10008.5.1.4.1.1.7",  # SecondaryCaptureImageStorage
    "1.2.840.10008.5.1.4.1.1.7.1",  # MultiFrameSingleBitSecondaryCaptureImageStorage
    "1.2.840.10008.5.1.4.1.1.7.2",  # MultiFrameGrayscaleByteSecondaryCaptureImageStorage
    "1.2.840.10008.5.1.4.1.1.7.3",  # MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    "1.2.840.10008.5.1.4.1.1.7.4",  # MultiFrameTrueColorSecondaryCaptureImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1",  # VLImageStorageTrial
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VLEndoscopicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # VideoEndoscopicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VLMicroscopicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # VideoMicroscopicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.3",  # VLSlideCoordinatesMicroscopicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VLPhotographicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # VideoPhotographicImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.5.1",  # OphthalmicPhotography8BitImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.5.2",  # OphthalmicPhotography16BitImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.5.3",  # StereometricRelationshipStorage
    "1.2.840.10008.5.1.4.1.1.77.1.5.4",  # OphthalmicTomographyImageStorage
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VLWholeSlideMicroscopyImageStorage
    "1.2.840.10008.5.1.4.1.1.77.2",  # VLMultiFrameImageStorageTrial
    "1.2.840.10008.5.1.4.1.1.78.1",  # LensometryMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.78.2",  # AutorefractionMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.78.3",  # KeratometryMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.78.4",  # SubjectiveRefractionMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.78.5",  # VisualAcuityMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.78.6",  # SpectaclePrescriptionReportStorage
    "1.2.840.10008.5.1.4.1.1.78.7",  # OphthalmicAxialMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.78.8",  # IntraocularLensCalculationsStorage
    "1.2.840.10008.5.1.4.1.1.79.1",  # MacularGridThicknessAndVolumeReportStorage
    "1.2.840.10008.5.1.4.1.1.8",  # StandaloneOverlayStorage
    "1.2.840.10008.5.1.4.1.1.80.1",  # OphthalmicVisualFieldStaticPerimetryMeasurementsStorage
    "1.2.840.10008.5.1.4.1.1.81.1",  # OphthalmicThicknessMapStorage
    "1.2.840.10008.5.1.4.1.1.88.11",  # BasicTextSRStorage
    "1.2.840.10008.5.1.4.1.1.88.22",  # EnhancedSRStorage
    "1.2.840.10008.5.1.4.1.1.88.33",  # ComprehensiveSRStorage
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive3DSRStorage
    "1.2.840.10008.5.1.4.1.1.88.40",  # ProcedureLogStorage
    "1.2.840.10008.5.1.4.1.1.88.50",  # MammographyCADSRStorage
    "1.2.840.10008.5.1.4.1.1.88.59",  # KeyObjectSelectionDocumentStorage
    "1.2.840.10008.5.1.4.1.1.88.65",  # ChestCADSRStorage
    "1.2.840.10008.5.1.4.1.1.88.67",  # XRayRadiationDoseSRStorage
    "1.2.840.10008.5.1.4.1.1.88.69",  # ColonCADSRStorage
    "1.2.840.10008.5.1.4.1.1.88.70",  # ImplantationPlanSRStorage
    "1.2.840.10008.5.1.4.1.1.9",  # StandaloneCurveStorage
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # TwelveLeadECGWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # GeneralECGWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # AmbulatoryECGWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.2.1",  # HemodynamicWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.3.1",  # CardiacElectrophysiologyWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.4.1",  # BasicVoiceAudioWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.4.2",  # GeneralAudioWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.5.1",  # ArterialPulseWaveformStorage
    "1.2.840.10008.5.1.4.1.1.9.6.1",  # RespiratoryWaveformStorage
    "1.2.840.10008.5.1.4.34.7",  # RTBeamsDeliveryInstructionStorage
)


class SOPClass(KnownUID):
    """A SOP Class UID: equal to, and hashing like, its UID string.

    ``name`` comes from pydicom's dictionary (e.g. ``"CT Image Storage"``);
    ``service_class`` is the service it belongs to, as in pynetdicom.
    """

    def __new__(cls, val: str) -> SOPClass:
        if isinstance(val, SOPClass):
            return val
        # Unknown peer UIDs may be non-conformant; that is not worth a warning here.
        return super().__new__(cls, val, validation_mode=config.IGNORE)

    @property
    def service_class(self) -> type[ServiceClass]:
        """The service class of this SOP class (:class:`ServiceClass` for one hsscp does not serve)."""
        return uid_to_service_class(self)


def _uid_sort_key(uid: str) -> tuple[int, ...]:
    """Order UIDs by their numeric components, so 1.2 sorts before 1.10."""
    return tuple(int(part) for part in uid.split("."))


def _is_storage(name: str, uid_type: str) -> bool:
    # Storage Commitment carries "Storage" in its name but is an N-ACTION
    # service, not something a peer can C-STORE.
    return (
        uid_type == "SOP Class"
        and "Storage" in name
        and not name.startswith("Storage Commitment")
    )


def _storage_uids() -> Iterator[str]:
    for uid, (name, uid_type, _info, _retired, _keyword) in UID_dictionary.items():
        if _is_storage(name, uid_type):
            yield uid
    yield from newer_uids("SOP Class")


STORAGE_SOP_CLASSES: tuple[SOPClass, ...] = tuple(
    SOPClass(uid) for uid in sorted(_storage_uids(), key=_uid_sort_key)
)
"""Every Storage SOP Class, ordered by UID."""

_STORAGE = frozenset(STORAGE_SOP_CLASSES)
_BY_UID: dict[str, SOPClass] = {sop_class: sop_class for sop_class in STORAGE_SOP_CLASSES}
_BY_UID[VERIFICATION_SOP_CLASS] = SOPClass(VERIFICATION_SOP_CLASS)
_REGISTERED: dict[str, type[ServiceClass]] = {}


def _module_names() -> dict[str, SOPClass]:
    names: dict[str, SOPClass] = {}
    for sop_class in _BY_UID.values():
        names[sop_class.keyword] = sop_class
        if sop_class not in _STORAGE:
            names[f"{sop_class.keyword}SOPClass"] = sop_class
    return names


_NAMES = _module_names()
globals().update(_NAMES)


def uid_to_sop_class(uid: str) -> SOPClass:
    """Return the SOPClass for `uid`; a bare one if hsscp has no name for it."""
    try:
        return _BY_UID[uid]
    except KeyError:
        return SOPClass(uid)


def uid_to_service_class(uid: str) -> type[ServiceClass]:
    """The service class a SOP class UID belongs to, as pynetdicom's function of that name.

    :class:`ServiceClass` itself for UIDs of services hsscp does not implement.
    Unlike pynetdicom, the retired and DICOS/DICONDE storage classes map to
    :class:`StorageServiceClass`: hsscp stores them.
    """
    if uid == VERIFICATION_SOP_CLASS:
        return VerificationServiceClass
    if uid in NON_PATIENT_OBJECT_CLASSES:
        return NonPatientObjectStorageServiceClass
    if uid in _STORAGE or uid == StorageServiceClass.uid:
        return StorageServiceClass
    return _REGISTERED.get(uid, ServiceClass)


def register_uid(
    uid: str, keyword: str, service_class: type[ServiceClass], dimse_msg_type: str = ""
) -> None:
    """Make a private or newer SOP Class UID known, as pynetdicom's ``register_uid``.

    Afterwards ``hsscp.sop_class.<keyword>`` is its SOPClass and
    :func:`uid_to_service_class` answers ``service_class``. `dimse_msg_type`
    only matters for pynetdicom's Query/Retrieve classes, which hsscp has not:
    it is accepted and ignored.
    """
    if not keyword.isidentifier() or iskeyword(keyword):
        raise ValueError(
            f"The keyword '{keyword}' is not a valid Python identifier or is a Python keyword"
        )
    if not inspect.isclass(service_class):
        raise TypeError("'service_class' must be a class object not a class instance")
    if not issubclass(service_class, ServiceClass):
        raise TypeError(
            "'service_class' must be a ServiceClass subclass object such as 'StorageServiceClass' "
            "(from hsscp.service_class)"
        )
    sop_class = SOPClass(uid)
    _REGISTERED[sop_class] = service_class
    _BY_UID[sop_class] = sop_class
    globals()[keyword] = sop_class


__all__ = [
    "COMMON_STORAGE_CLASSES",
    "NEWER_STORAGE_CLASSES",
    "NON_PATIENT_OBJECT_CLASSES",
    "STORAGE_SOP_CLASSES",
    "SOPClass",
    "register_uid",
    "uid_to_service_class",
    "uid_to_sop_class",
    *sorted(_NAMES),
]
