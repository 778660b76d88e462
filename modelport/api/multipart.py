"""A ``multipart/form-data`` body read into its fields (the Files API's upload), with the
standard library's MIME parser: the body is in memory already (its size checked by the route).
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.parser import BytesParser

from modelport.errors import MalformedRequest

__all__ = ["Part", "parse_form"]


@dataclass(frozen=True)
class Part:
    """One field: its value, and for a file its name."""

    value: bytes
    filename: str | None


def parse_form(content_type: str, body: bytes) -> dict[str, Part]:
    """The fields of a ``multipart/form-data`` body (a 400 when it is not one)."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise MalformedRequest("Send the file as multipart/form-data (fields 'file' and 'purpose').")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    unreadable = MalformedRequest("The multipart/form-data body could not be read.")
    fields: dict[str, Part] = {}
    try:  # the parser's own errors, translated here
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        if not isinstance(message, EmailMessage) or not message.is_multipart():
            raise unreadable
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            fields[name] = Part(payload if isinstance(payload, bytes) else b"", part.get_filename())
    except (MessageError, ValueError, LookupError, UnicodeError):
        raise unreadable from None
    return fields
