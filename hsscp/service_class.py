"""The service classes, named as in :mod:`pynetdicom.service_class`.

hsscp implements Verification and Storage; these classes name a SOP class's
service (``SOPClass.service_class``, :func:`hsscp.sop_class.uid_to_service_class`,
:func:`hsscp.sop_class.register_uid`) and carry its status table. The DIMSE
work itself is done by hsscp's acceptor, not by methods here. A SOP class of
any other service maps to the base :class:`ServiceClass`, as pynetdicom maps
the ones it does not implement.
"""

from __future__ import annotations

from typing import ClassVar

from hsscp import status

__all__ = [
    "NonPatientObjectStorageServiceClass",
    "ServiceClass",
    "StorageServiceClass",
    "VerificationServiceClass",
]


class ServiceClass:
    """Base of the service classes; on its own: a service hsscp does not implement."""

    statuses: ClassVar[status.StatusDictType] = status.GENERAL_STATUS


class VerificationServiceClass(ServiceClass):
    """Verification (C-ECHO), PS3.4 Annex A."""

    statuses: ClassVar[status.StatusDictType] = status.VERIFICATION_SERVICE_CLASS_STATUS


class StorageServiceClass(ServiceClass):
    """Storage (C-STORE), PS3.4 Annex B."""

    uid: ClassVar[str] = "1.2.840.10008.4.2"
    statuses: ClassVar[status.StatusDictType] = status.STORAGE_SERVICE_CLASS_STATUS


class NonPatientObjectStorageServiceClass(StorageServiceClass):
    """Non-Patient Object Storage (hanging protocols, colour palettes...), PS3.4 Annex GG."""

    statuses: ClassVar[status.StatusDictType] = status.NON_PATIENT_SERVICE_CLASS_STATUS
