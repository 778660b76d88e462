"""PII detectors of the AI gateway: every kind found with its exact span and masked; near misses not."""

from __future__ import annotations

import itertools
import time

import pytest

from modelport.gateway.pii import (
    CREDIT_CARD,
    DESCRIPTIONS,
    EMAIL,
    IBAN,
    IBAN_LENGTHS,
    IP_ADDRESS,
    KINDS,
    PHONE,
    US_SSN,
    Finding,
    find_pii,
    iban_ok,
    luhn_ok,
    mask_pii,
)

POSITIVES = [
    # (kind, value); each is tried alone and inside a sentence.
    (EMAIL, "john.doe@example.com"),
    (EMAIL, "first.last+tag@mail.example.co.uk"),
    (EMAIL, "a_b-c%d@sub-domain.io"),
    (PHONE, "+44 20 7946 0958"),
    (PHONE, "+1 (555) 123-4567"),
    (PHONE, "+33 6 12 34 56 78"),
    (PHONE, "+4915112345678"),
    (PHONE, "+49 (0)30 1234567"),
    (PHONE, "+1.555.123.4567"),
    (PHONE, "(555) 123-4567"),
    (PHONE, "555-123-4567"),
    (PHONE, "555.123.4567"),
    (PHONE, "1-555-123-4567"),
    (PHONE, "555-1234"),
    (PHONE, "030 1234567"),
    (PHONE, "06 12 34 56 78"),
    (PHONE, "020 7946 0958"),
    (PHONE, "07700 900123"),
    (CREDIT_CARD, "4111 1111 1111 1111"),
    (CREDIT_CARD, "4111-1111-1111-1111"),
    (CREDIT_CARD, "4111111111111111"),
    (CREDIT_CARD, "5555555555554444"),
    (CREDIT_CARD, "378282246310005"),
    (CREDIT_CARD, "3782 822463 10005"),
    (CREDIT_CARD, "6011111111111117"),
    (CREDIT_CARD, "30569309025904"),
    (CREDIT_CARD, "4222222222222"),
    (IBAN, "DE89 3704 0044 0532 0130 00"),
    (IBAN, "DE89370400440532013000"),
    (IBAN, "GB82 WEST 1234 5698 7654 32"),
    (IBAN, "GB82WEST12345698765432"),
    (IBAN, "CH93 0076 2011 6238 5295 7"),
    (IBAN, "FR14 2004 1010 0505 0001 3M02 606"),
    (IBAN, "NL91ABNA0417164300"),
    (IBAN, "NO9386011117947"),
    (IBAN, "MT84MALT011000012345MTLCAST001S"),
    (US_SSN, "123-45-6789"),
    (US_SSN, "078-05-1120"),
    (IP_ADDRESS, "192.168.1.1"),
    (IP_ADDRESS, "8.8.8.8"),
    (IP_ADDRESS, "255.255.255.255"),
    (IP_ADDRESS, "2001:db8::1"),
    (IP_ADDRESS, "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    (IP_ADDRESS, "fe80::1%eth0"),
    (IP_ADDRESS, "::1"),
    (IP_ADDRESS, "::ffff:192.0.2.1"),
]


@pytest.mark.parametrize(("kind", "value"), POSITIVES)
def test_each_kind_is_found_with_its_exact_span_and_masked(kind: str, value: str) -> None:
    assert find_pii(value) == [Finding(kind, 0, len(value), value)]
    text = f"Hi, my detail is {value}, thanks."
    start = text.index(value)
    assert find_pii(text) == [Finding(kind, start, start + len(value), value)]
    masked, findings = mask_pii(text)
    assert masked == f"Hi, my detail is [{kind}], thanks."
    assert [f.kind for f in findings] == [kind]


NEGATIVES = [
    # Credit cards: Luhn fails, wrong length, not a card prefix, all zeros, mixed separators.
    "4111 1111 1111 1112",
    "4111111111111112",
    "1234567890123456",
    "0000 0000 0000 0000",
    "411111111111",
    "41111111111111111111111",
    "4111 1111-1111 1111",
    # IBANs: bad checksum, wrong length for the country, unknown country, lowercase.
    "DE89 3704 0044 0532 0130 01",
    "DE88370400440532013000",
    "GB82WEST1234569876543",
    "XX82WEST12345698765432",
    "de89370400440532013000",
    # SSNs the SSA never issues.
    "000-12-3456",
    "666-12-3456",
    "912-34-5678",
    "123-00-4567",
    "123-45-0000",
    "123-45-67890",
    # IP addresses: octet out of range, leading zeros, too few parts, versions, not IPv6.
    "256.1.1.1",
    "192.168.1.300",
    "01.2.3.4",
    "1.2.3",
    "v1.2.3.4",
    "::",
    "std::vector<int>",
    "Face::Bad",
    "12:30:45",
    "00:1a:2b:3c:4d:5e",
    "2023-01-15T10:30:00",
    # Phones: years, prices, dates, numbers, long digit runs, unformatted numbers.
    "In 2023 we grew",
    "It costs $1,299.99",
    "It costs $555-1234",
    "01.02.2023",
    "05/06/2023",
    "2023-01-15",
    "12/31/2023",
    "from 1999-2004",
    "10 000 000 people",
    "1.234.567",
    "5551234567",
    "order 12345678",
    "3.14159",
    # Emails without a domain or TLD.
    "user@localhost",
    "@handle",
    "john.doe@",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_near_misses_are_not_pii(text: str) -> None:
    assert find_pii(text) == []
    assert mask_pii(text) == (text, [])


def test_long_card_numbers_are_not_taken_for_phones() -> None:
    # A card that fails Luhn must not leave a phone number behind in one of its pieces.
    for text in ("4111 1111 1111 1112", "4111-1111-1111-1112", "5555 5555 5555 4445"):
        assert find_pii(f"card {text} end") == []


def test_card_with_a_trailing_group_keeps_only_the_card() -> None:
    text = "pay with 4111 1111 1111 1111 2 times"
    assert [(f.kind, f.text) for f in find_pii(text)] == [(CREDIT_CARD, "4111 1111 1111 1111")]


def test_iban_is_cut_at_its_country_length() -> None:
    text = "IBAN GB82 WEST 1234 5698 7654 32 TODAY PLEASE"
    (finding,) = find_pii(text)
    assert (finding.kind, finding.text) == (IBAN, "GB82 WEST 1234 5698 7654 32")
    assert mask_pii(text)[0] == "IBAN [IBAN] TODAY PLEASE"


def test_ip_address_with_port_and_trailing_colon() -> None:
    assert [f.text for f in find_pii("connect to 10.0.0.1:8080 now")] == ["10.0.0.1"]
    assert [f.text for f in find_pii("the host fe80::1: it answered")] == ["fe80::1"]


def test_several_kinds_in_one_text_are_masked_in_order() -> None:
    text = (
        "Email jane@corp.com or call +1 555 123 4567. Card 4111-1111-1111-1111, "
        "IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, host 192.168.0.10 and 2001:db8::ff."
    )
    masked, findings = mask_pii(text)
    assert masked == (
        "Email [EMAIL] or call [PHONE]. Card [CREDIT_CARD], "
        "IBAN [IBAN], SSN [US_SSN], host [IP_ADDRESS] and [IP_ADDRESS]."
    )
    assert [f.kind for f in findings] == [EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS, IP_ADDRESS]
    for f in findings:
        assert text[f.start : f.end] == f.text
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


def test_overlaps_resolve_to_the_longest() -> None:
    # The phone candidate inside an email's local part loses to the whole email.
    text = "write to 555-1234@example.com"
    assert [(f.kind, f.text) for f in find_pii(text)] == [(EMAIL, "555-1234@example.com")]


def test_kinds_filter() -> None:
    text = "jane@corp.com 123-45-6789"
    assert [f.kind for f in find_pii(text, kinds=[US_SSN])] == [US_SSN]
    assert mask_pii(text, kinds=[EMAIL])[0] == "[EMAIL] 123-45-6789"


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("GB82 WEST 1234 5698 7654 32")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert not iban_ok("GB82 WEST 1234 5698 7654")
    assert not iban_ok("ZZ82WEST12345698765432")


def test_tables_cover_eu_eea_gb_ch_and_every_kind_has_a_description() -> None:
    eu_eea = {
        *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT"),
        *("LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"),
        *("IS", "LI", "NO", "GB", "CH"),
    }
    assert eu_eea <= set(IBAN_LENGTHS)
    assert set(DESCRIPTIONS) == set(KINDS)


def test_no_pii_in_plain_text_and_unicode() -> None:
    text = "Grüße aus Köln! Das Treffen ist am 3. März um 14:30 Uhr in Raum 2.17, Preis 12,50 €."
    assert find_pii(text) == []


def test_speed_per_kilobyte() -> None:
    prose = (
        "The quarterly report shows revenue grew by 12 percent in 2023 while costs fell to 4.5 million; "
        "see section 3.2 of the appendix, version 2.1, for details on the 14:30 meeting. "
    )
    dense = "Mail jane@corp.com, call +44 20 7946 0958, card 4111 1111 1111 1111, ip 10.1.2.3. "
    for sample in (prose, dense):
        text = (sample * (1024 // len(sample) + 1))[:1024]
        find_pii(text)
        runs = 50
        start = time.perf_counter()
        for _ in range(runs):
            mask_pii(text)
        per_kb_us = (time.perf_counter() - start) / runs * 1e6
        print(f"mask_pii: {per_kb_us:.0f} us per KB ({'dense' if sample is dense else 'prose'})")
        # Generous: a shared 2-core machine; measured ~100-400 us.
        assert per_kb_us < 5000
