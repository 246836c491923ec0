"""Tests of the QUIC dissector on published test vectors, aioquic's packets and nDPI's captures.

Sources:
- RFC 9001 Appendix A (QUIC v1 Initial keys and packets), RFC 9369 Appendix A (QUIC v2), and
  draft-ietf-quic-tls-23 Appendix A (the draft-23..28 salt): published test vectors.
- aioquic (sans-IO QuicConnection) for real v1/v2 client and server flights.
- ../shared/corpus/ndpi: nDPI's regression captures with nDPI's own output; the SNI and user
  agent this dissector finds are compared flow by flow with nDPI's (skipped when absent).
"""

from __future__ import annotations

import datetime
import random
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicProtocolVersion
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.gquic import decode_gquic
from sluice.wire.quic import (
    LongPacketType,
    QuicClientHelloAssembler,
    QuicInitial,
    QuicVersion,
    TransportParameter,
    decode_initials,
    decode_long_header,
    decode_packet_number,
    decode_transport_parameters,
    is_quic_long_header,
    quic_version_name,
)
from sluice.wire.quic_crypto import derive_initial_keys, initial_protection
from tests.corpus.ndpi_out import NDPI, read_ndpi_out
from tests.corpus_util import Endpoint, ndpi_key, udp_datagrams

RFC_DCID = bytes.fromhex("8394c8f03e515708")

# --- Published test vectors -------------------------------------------------------------------

# RFC 9001 A.2 / RFC 9369 A.2: the client's CRYPTO frame (ClientHello for example.com).
RFC_CLIENT_CRYPTO_FRAME = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff"
)
# RFC 9001 A.3 / RFC 9369 A.3: the server's ACK and CRYPTO (ServerHello) frames.
RFC_SERVER_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739"
    "88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94"
    "0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00"
    "020304"
)
RFC9001_CLIENT_INITIAL = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934"
)
RFC9001_SERVER_INITIAL = bytes.fromhex(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee"
)
RFC9369_CLIENT_INITIAL = bytes.fromhex(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc"
)
RFC9369_SERVER_INITIAL = bytes.fromhex(
    "dc6b3343cf0008f067a5502a4262b5004075d92faaf16f05d8a4398c47089698"
    "baeea26b91eb761d9b89237bbf87263017915358230035f7fd3945d88965cf17"
    "f9af6e16886c61bfc703106fbaf3cb4cfa52382dd16a393e42757507698075b2"
    "c984c707f0a0812d8cd5a6881eaf21ceda98f4bd23f6fe1a3e2c43edd9ce7ca8"
    "4bed8521e2e140"
)
# draft-ietf-quic-tls-23 A.2: a draft-23 client Initial (salt 0xc3eef712...).
DRAFT23_CLIENT_CRYPTO_FRAME = bytes.fromhex(
    "060040c4010000c003036660261ff947cea49cce6cfad687f457cf1b14531ba1"
    "4131a0e8f309a1d0b9c4000006130113031302010000910000000b0009000006"
    "736572766572ff01000100000a00140012001d00170018001901000101010201"
    "03010400230000003300260024001d00204cfdfcd178b784bf328cae793b136f"
    "2aedce005ff183d7bb1495207236647037002b0003020304000d0020001e0403"
    "05030603020308040805080604010501060102010402050206020202002d0002"
    "0101001c00024001"
)
DRAFT23_CLIENT_INITIAL = bytes.fromhex(
    "c0ff000017088394c8f03e5157080000449e3b343aa8535064a4268a0d9d7b1c"
    "9d250ae355162276e9b1e3011ef6bbc0ab48ad5bcc2681e953857ca62becd752"
    "4daac473e68d7405fbba4e9ee616c87038bdbe908c06d9605d9ac49030359eec"
    "b1d05a14e117db8cede2bb09d0dbbfee271cb374d8f10abec82d0f59a1dee29f"
    "e95638ed8dd41da07487468791b719c55c46968eb3b54680037102a28e53dc1d"
    "12903db0af5821794b41c4a93357fa59ce69cfe7f6bdfa629eef78616447e1d6"
    "11c4baf71bf33febcb03137c2c75d25317d3e13b684370f668411c0f00304b50"
    "1c8fd422bd9b9ad81d643b20da89ca0525d24d2b142041cae0af205092e43008"
    "0cd8559ea4c5c6e4fa3f66082b7d303e52ce0162baa958532b0bbc2bc785681f"
    "cf37485dff6595e01e739c8ac9efba31b985d5f656cc092432d781db95221724"
    "87641c4d3ab8ece01e39bc85b15436614775a98ba8fa12d46f9b35e2a55eb72d"
    "7f85181a366663387ddc20551807e007673bd7e26bf9b29b5ab10a1ca87cbb7a"
    "d97e99eb66959c2a9bc3cbde4707ff7720b110fa95354674e395812e47a0ae53"
    "b464dcb2d1f345df360dc227270c750676f6724eb479f0d2fbb6124429990457"
    "ac6c9167f40aab739998f38b9eccb24fd47c8410131bf65a52af841275d5b3d1"
    "880b197df2b5dea3e6de56ebce3ffb6e9277a82082f8d9677a6767089b671ebd"
    "244c214f0bde95c2beb02cd1172d58bdf39dce56ff68eb35ab39b49b4eac7c81"
    "5ea60451d6e6ab82119118df02a586844a9ffe162ba006d0669ef57668cab38b"
    "62f71a2523a084852cd1d079b3658dc2f3e87949b550bab3e177cfc49ed190df"
    "f0630e43077c30de8f6ae081537f1e83da537da980afa668e7b7fb25301cf741"
    "524be3c49884b42821f17552fbd1931a813017b6b6590a41ea18b6ba49cd48a4"
    "40bd9a3346a7623fb4ba34a3ee571e3c731f35a7a3cf25b551a680fa68763507"
    "b7fde3aaf023c50b9d22da6876ba337eb5e9dd9ec3daf970242b6c5aab3aa4b2"
    "96ad8b9f6832f686ef70fa938b31b4e5ddd7364442d3ea72e73d668fb0937796"
    "f462923a81a47e1cee7426ff6d9221269b5a62ec03d6ec94d12606cb485560ba"
    "b574816009e96504249385bb61a819be04f62c2066214d8360a2022beb316240"
    "b6c7d78bbe56c13082e0ca272661210abf020bf3b5783f1426436cf9ff418405"
    "93a5d0638d32fc51c5c65ff291a3a7a52fd6775e623a4439cc08dd25582febc9"
    "44ef92d8dbd329c91de3e9c9582e41f17f3d186f104ad3f90995116c682a2a14"
    "a3b4b1f547c335f0be710fc9fc03e0e587b8cda31ce65b969878a4ad4283e6d5"
    "b0373f43da86e9e0ffe1ae0fddd3516255bd74566f36a38703d5f34249ded1f6"
    "6b3d9b45b9af2ccfefe984e13376b1b2c6404aa48c8026132343da3f3a33659e"
    "c1b3e95080540b28b7f3fcd35fa5d843b579a84c089121a60d8c1754915c344e"
    "eaf45a9bf27dc0c1e78416169122091313eb0e87555abd706626e557fc36a04f"
    "cd191a58829104d6075c5594f627ca506bf181daec940f4a4f3af0074eee89da"
    "acde6758312622d4fa675b39f728e062d2bee680d8f41a597c262648bb18bcfc"
    "13c8b3d97b1a77b2ac3af745d61a34cc4709865bac824a94bb19058015e4e42d"
    "c9be6c7803567321829dd85853396269"
)


# --- Local helper: a ClientHello extension reader -------------------------------------------


def hello_extensions(msg: bytes) -> dict[int, bytes]:
    """Extensions of a ClientHello handshake message (type, u24 length, body); test-only."""
    p = 4 + 2 + 32
    p += 1 + msg[p]  # session id
    p += 2 + int.from_bytes(msg[p : p + 2], "big")  # cipher suites
    p += 1 + msg[p]  # compression methods
    end = p + 2 + int.from_bytes(msg[p : p + 2], "big")
    p += 2
    out = {}
    while p < end:
        ext, n = struct.unpack_from(">HH", msg, p)
        out[ext] = msg[p + 4 : p + 4 + n]
        p += 4 + n
    return out


def hello_sni(msg: bytes) -> str | None:
    ext = hello_extensions(msg).get(0)
    return None if ext is None else ext[5 : 5 + int.from_bytes(ext[3:5], "big")].decode()


def hello_alpn(msg: bytes) -> list[str]:
    ext = hello_extensions(msg).get(16, b"\x00\x00")
    names, p = [], 2
    while p < len(ext):
        names.append(ext[p + 1 : p + 1 + ext[p]].decode())
        p += 1 + ext[p]
    return names


def hello_user_agent(msg: bytes, version: int) -> str | None:
    """Chrome's user agent, from the QUIC transport parameters extension (57, drafts 0xffa5)."""
    extensions = hello_extensions(msg)
    body = extensions.get(57, extensions.get(0xFFA5))
    if body is None:
        return None
    params = dict(decode_transport_parameters(body, version))
    ua = params.get(TransportParameter.GOOGLE_USER_AGENT)
    return None if ua is None else ua.decode()


# --- Published vectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "client", "server"),
    [
        (  # RFC 9001 A.1
            QuicVersion.V1,
            ("1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c",
             "9f50449e04a0e810283a1e9933adedd2"),
            ("cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e",
             "c206b8d9b9f0f37644430b490eeaa314"),
        ),
        (  # RFC 9369 A.1
            QuicVersion.V2,
            ("8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f",
             "45b95e15235d6f45a6b19cbcb0294ba9"),
            ("82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652",
             "edf6d05c83121201b436e16877593c3a"),
        ),
    ],
)  # fmt: skip
def test_initial_keys_match_rfc(
    version: int, client: tuple[str, str, str], server: tuple[str, str, str]
) -> None:
    for keys, expected in (
        (derive_initial_keys(version, RFC_DCID), client),
        (derive_initial_keys(version, RFC_DCID, server=True), server),
    ):
        assert (keys.key.hex(), keys.iv.hex(), keys.hp.hex()) == expected


@pytest.mark.parametrize(
    ("packet", "version", "frame"),
    [
        (RFC9001_CLIENT_INITIAL, QuicVersion.V1, RFC_CLIENT_CRYPTO_FRAME),
        (RFC9369_CLIENT_INITIAL, QuicVersion.V2, RFC_CLIENT_CRYPTO_FRAME),
        (DRAFT23_CLIENT_INITIAL, 0xFF000017, DRAFT23_CLIENT_CRYPTO_FRAME),
    ],
    ids=["rfc9001", "rfc9369", "draft23"],
)
def test_client_initial_vectors(packet: bytes, version: int, frame: bytes) -> None:
    assert is_quic_long_header(packet)
    (initial,) = decode_initials(packet)
    hello = frame[4:]
    assert initial == QuicInitial(
        version=version,
        dcid=RFC_DCID,
        scid=b"",
        token=b"",
        packet_number=2,
        crypto=((0, hello),),
        from_client=True,
    )
    assembler = QuicClientHelloAssembler()
    assert assembler.add(initial) == hello
    assert hello_sni(hello) == ("server" if version == 0xFF000017 else "example.com")


@pytest.mark.parametrize(
    ("packet", "version"),
    [(RFC9001_SERVER_INITIAL, QuicVersion.V1), (RFC9369_SERVER_INITIAL, QuicVersion.V2)],
    ids=["rfc9001", "rfc9369"],
)
def test_server_initial_vectors(packet: bytes, version: int) -> None:
    (initial,) = decode_initials(packet, client_dcid=RFC_DCID)
    assert initial.version == version
    assert (initial.dcid, initial.scid) == (b"", bytes.fromhex("f067a5502a4262b5"))
    assert (initial.packet_number, initial.from_client) == (1, False)
    assert initial.crypto == ((0, RFC_SERVER_PAYLOAD[9:]),)  # after ACK and CRYPTO headers
    assert initial.crypto[0][1][0] == 2  # ServerHello
    # Without the client's DCID the keys are wrong: the packet does not open.
    with pytest.raises(DecodeError) as err:
        decode_initials(packet)
    assert err.value.reason == "quic.decrypt_failed"
    # The assembler only takes the client's CRYPTO data.
    assert QuicClientHelloAssembler().add(initial) is None


def test_v2_packet_type_bits() -> None:
    # RFC 9369 §3.2: Initial is 0b01 in v2; the v1 Initial type bits mean 0-RTT there.
    assert decode_long_header(RFC9369_CLIENT_INITIAL).packet_type is LongPacketType.INITIAL
    assert decode_long_header(RFC9001_CLIENT_INITIAL).packet_type is LongPacketType.INITIAL
    retyped = bytes([RFC9369_CLIENT_INITIAL[0] & 0xCF]) + RFC9369_CLIENT_INITIAL[1:]
    assert decode_long_header(retyped).packet_type is LongPacketType.RETRY
    assert decode_initials(retyped) == []  # a Retry carries no Initial


def test_packet_number_decoding_rfc9000_example() -> None:
    # RFC 9000 A.3.
    assert decode_packet_number(0xA82F30EA, 0x9B32, 16) == 0xA82F9B32
    assert decode_packet_number(-1, 2, 8) == 2
    assert decode_packet_number(0xFE, 0x01, 8) == 0x101


def test_version_names_like_ndpi() -> None:
    names = {
        0x00000001: "V-1",
        0x6B3343CF: "V-2",
        0xFF00001D: "Draft-29",
        0xFF00001B: "Draft-27",
        0x51303436: "Q046",
        0x51303235: "Q025",
        0x54303531: "T051",
        0xFACEB002: "MVFST-27",
        0x0A0A0A0A: "Ver-Negotiation",
        0x1A2A3A4A: "Ver-Negotiation",
        0x12345678: "Unknown (12345678)",
        0x00000000: "Unknown (0000)",
    }
    assert {v: quic_version_name(v) for v in names} == names


# --- Decoding rules: coalescing, errors, frames -------------------------------------------------


def test_coalesced_packets_and_trailers() -> None:
    pair = RFC9001_CLIENT_INITIAL + RFC9001_CLIENT_INITIAL
    assert len(decode_initials(pair)) == 2
    # Padding, a short-header packet or another connection's packet end the walk (§12.2).
    assert len(decode_initials(RFC9001_CLIENT_INITIAL + bytes(40))) == 1
    assert len(decode_initials(RFC9001_CLIENT_INITIAL + b"\x41" + bytes(30))) == 1
    other = client_flight(QuicProtocolVersion.VERSION_1)[1][0]
    assert len(decode_initials(RFC9001_CLIENT_INITIAL + other)) == 1
    # A damaged packet after a good Initial ends the walk; alone it is an error.
    assert len(decode_initials(RFC9001_CLIENT_INITIAL + RFC9001_CLIENT_INITIAL[:300])) == 1


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "quic.truncated"),
        (b"\x41\x00\x01", "quic.bad_header"),
        (RFC9001_CLIENT_INITIAL[:300], "quic.truncated"),
        (b"\xc0\x0a\x0a\x0a\x0a" + RFC9001_CLIENT_INITIAL[5:], "quic.unsupported_version"),
        (RFC9001_CLIENT_INITIAL[:-1] + b"\x00", "quic.decrypt_failed"),
        (RFC9001_CLIENT_INITIAL[:5] + b"\x15" + bytes(21) + b"\x00\x00\x40\x20", "quic.bad_header"),
    ],
    ids=["empty", "short-header", "truncated", "grease-version", "bad-tag", "long-cid"],
)  # fmt: skip
def test_decode_errors(datagram: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_initials(datagram)
    assert err.value.reason == reason


def test_version_negotiation_has_no_initials() -> None:
    vn = b"\xc0\x00\x00\x00\x00\x08" + RFC_DCID + b"\x00" + b"\x00\x00\x00\x01"
    assert is_quic_long_header(vn)
    assert decode_initials(vn) == []
    assert decode_long_header(vn).packet_type is None


def _seal(payload: bytes, *, packet_number: int = 0, pn_len: int = 2) -> bytes:
    """Protect a v1 client Initial with aioquic's packet protection (not with sluice's)."""
    payload = payload + bytes(max(0, 1162 - len(payload)))
    pn = (packet_number % (1 << (8 * pn_len))).to_bytes(pn_len, "big")
    length = (len(pn) + len(payload) + 16) | 0x4000
    header = (
        bytes([0xC0 | (pn_len - 1)])
        + b"\x00\x00\x00\x01\x08"
        + RFC_DCID
        + b"\x00\x00"
        + length.to_bytes(2, "big")
        + pn
    )
    pair = CryptoPair()
    pair.setup_initial(cid=RFC_DCID, is_client=True, version=QuicProtocolVersion.VERSION_1)
    return bytes(pair.encrypt_packet(header, payload, packet_number))


def test_frame_walk_over_every_initial_frame_type() -> None:
    hello = RFC_CLIENT_CRYPTO_FRAME[4:]
    payload = (
        b"\x01"  # PING
        + b"\x02\x05\x00\x01\x00\x01\x01"  # ACK, one extra range
        + b"\x03\x05\x00\x00\x00\x01\x02\x03"  # ACK_ECN
        + b"\x06\x40\x64\x05hello"  # CRYPTO at offset 100
        + RFC_CLIENT_CRYPTO_FRAME
        + b"\x1c\x0a\x06\x03bye"  # CONNECTION_CLOSE
        + b"\x1d\x0a\x00"  # CONNECTION_CLOSE (application)
        + b"\x18\x01\x00\x04abcd"
        + bytes(16)  # NEW_CONNECTION_ID
        + b"\x1a"
        + bytes(8)  # PATH_CHALLENGE
        + b"\x07\x02tk"  # NEW_TOKEN
        + b"\x0e\x04\x01\x02hi"  # STREAM with offset and length
        + b"\x31\x02dg"  # DATAGRAM with length
        + b"\x10\x7f\xff"  # MAX_DATA with a 2-byte varint
    )
    (initial,) = decode_initials(_seal(payload, packet_number=7, pn_len=1), largest_pn=5)
    assert initial.packet_number == 7
    assert initial.crypto == ((100, b"hello"), (0, hello))


def test_unknown_frame_stops_the_walk() -> None:
    with pytest.raises(DecodeError) as err:
        decode_initials(_seal(RFC_CLIENT_CRYPTO_FRAME + b"\x40\x21"))  # type 0x21 in 2 bytes
    assert err.value.reason == "quic.unknown_frame"
    with pytest.raises(DecodeError) as err:
        decode_initials(_seal(b"\x06\x00\x40\xff" + b"x" * 10, pn_len=4)[:-1162])
    assert err.value.reason in {"quic.truncated", "quic.decrypt_failed"}


def test_packet_number_expansion_uses_largest_seen() -> None:
    packet = _seal(RFC_CLIENT_CRYPTO_FRAME, packet_number=0x1F5, pn_len=1)  # sent as 0xF5
    assert decode_initials(packet, largest_pn=0x1F0)[0].packet_number == 0x1F5
    with pytest.raises(DecodeError):
        decode_initials(packet)  # expands to 0xF5: wrong nonce


def test_key_cache_is_used_across_a_flows_initials() -> None:
    initial_protection.cache_clear()
    for _ in range(3):
        decode_initials(RFC9001_CLIENT_INITIAL)
    info = initial_protection.cache_info()
    assert (info.misses, info.hits) == (1, 2)


# --- Assembler ----------------------------------------------------------------------------------


def _client_initial(crypto: tuple[tuple[int, bytes], ...]) -> QuicInitial:
    return QuicInitial(1, RFC_DCID, b"", b"", 0, crypto, from_client=True)


def test_assembler_out_of_order_and_overlapping() -> None:
    hello = RFC_CLIENT_CRYPTO_FRAME[4:]
    assembler = QuicClientHelloAssembler()
    assert assembler.add(_client_initial(((100, hello[100:]),))) is None
    assert assembler.add(_client_initial(((50, hello[50:120]), (4, hello[4:60])))) is None
    assert assembler.add(_client_initial(((0, hello[:5]),))) == hello
    assert assembler.client_hello_bytes() == hello


def test_assembler_limits_and_type() -> None:
    with pytest.raises(DecodeError) as err:
        QuicClientHelloAssembler(max_bytes=1000).add_crypto(990, b"x" * 20)
    assert err.value.reason == "quic.crypto_too_large"
    with pytest.raises(DecodeError) as err:
        QuicClientHelloAssembler(max_bytes=1000).add_crypto(0, b"\x01\x01\x00\x00")
    assert err.value.reason == "quic.crypto_too_large"
    with pytest.raises(DecodeError) as err:
        QuicClientHelloAssembler().add_crypto(0, b"\x02\x00\x00\x04")
    assert err.value.reason == "quic.not_client_hello"


# --- aioquic: real client and server flights ----------------------------------------------------

VERSIONS = [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2]


def client_flight(
    version: int, *, server_name: str = "example.org", alpn: tuple[str, ...] = ("h3",)
) -> tuple[QuicConnection, list[bytes]]:
    config = QuicConfiguration(
        is_client=True,
        server_name=server_name,
        alpn_protocols=list(alpn),
        supported_versions=[version],
    )
    conn = QuicConnection(configuration=config)
    conn.connect(("192.0.2.1", 443), now=0.0)
    return conn, [d for d, _ in conn.datagrams_to_send(now=0.0)]


@pytest.fixture(scope="module")
def server_credentials() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.org")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert, key


@pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])
def test_aioquic_client_initial(version: int) -> None:
    _, datagrams = client_flight(version)
    (datagram,) = datagrams
    header = decode_long_header(datagram)
    assert (header.version, header.packet_type) == (version, LongPacketType.INITIAL)
    (initial,) = decode_initials(datagram)
    assert (initial.version, initial.dcid, initial.packet_number) == (version, header.dcid, 0)
    assert initial.from_client
    hello = QuicClientHelloAssembler().add(initial)
    assert hello is not None
    assert hello_sni(hello) == "example.org"
    assert hello_alpn(hello) == ["h3"]


@pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])
def test_aioquic_server_flight_and_client_reply(
    version: int, server_credentials: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    client, datagrams = client_flight(version)
    odcid = datagrams[0][6 : 6 + datagrams[0][5]]
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"], supported_versions=[version])
    config.certificate, config.private_key = server_credentials
    server = QuicConnection(configuration=config, original_destination_connection_id=odcid)
    for d in datagrams:
        server.receive_datagram(d, ("192.0.2.2", 50000), now=0.0)
    replies = [d for d, _ in server.datagrams_to_send(now=0.0)]
    # The server's first datagram: its Initial (ServerHello) coalesced with Handshake packets.
    (initial,) = decode_initials(replies[0], client_dcid=odcid)
    assert not initial.from_client
    assert initial.version == version
    assert initial.dcid == decode_long_header(datagrams[0]).scid
    assert initial.crypto[0][0] == 0
    assert initial.crypto[0][1][0] == 2  # ServerHello
    # The client's answer goes to the server's CID but still uses the original DCID's keys.
    for d in replies:
        client.receive_datagram(d, ("192.0.2.1", 443), now=0.01)
    answer = next(d for d, _ in client.datagrams_to_send(now=0.01))
    (ack,) = decode_initials(answer, client_dcid=odcid)
    assert ack.from_client
    assert ack.dcid == initial.scid != odcid
    assert ack.packet_number == 1


@pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])
def test_aioquic_big_client_hello_shuffled(version: int) -> None:
    alpn = tuple(f"proto-{i:04d}-{'x' * 20}" for i in range(150))
    _, datagrams = client_flight(version, server_name="www." + "a" * 60 + ".example", alpn=alpn)
    assert len(datagrams) >= 2
    initials = [i for d in datagrams for i in decode_initials(d)]
    in_order = b"".join(data for i in initials for _, data in sorted(i.crypto))
    random.Random(20240611).shuffle(initials)
    assembler = QuicClientHelloAssembler()
    results = [assembler.add(i) for i in initials]
    assert results[:-1] == [None] * (len(initials) - 1)
    hello = results[-1]
    assert hello is not None
    assert hello == in_order[: len(hello)]
    assert hello_sni(hello) == "www." + "a" * 60 + ".example"
    assert hello_alpn(hello) == list(alpn)


# --- nDPI's captures ----------------------------------------------------------------------------

CAPTURES = [
    "doq.pcapng",
    "doq_adguard.pcapng",
    "google_meet.pcapng",
    "gquic.pcap",
    "http_ipv6.pcap",
    "quic-27.pcap",
    "quic-29.pcap",
    "quic-33.pcapng",
    "quic-34.pcap",
    "quic-forcing-vn-with-data.pcapng",
    "quic-mvfst-27.pcapng",
    "quic.pcap",
    "quic046.pcap",
    "quic_0RTT.pcap",
    "quic_frags_ch_in_multiple_packets.pcapng",
    "quic_frags_ch_out_of_order_same_packet_craziness.pcapng",
    "quic_frags_different_dcid.pcapng",
    "quic_interop_V.pcapng",
    "quic_q50.pcap",
    "quic_sh.pcap",
    "quic_t51.pcap",
    "sites.pcapng",
    "wechat.pcap",
    "youtubeupload.pcap",
]

# nDPI flows without a usable first flight: (no long header or CHLO seen, none decrypts).
UNDECODABLE = {
    "http_ipv6.pcap": (1, 0),  # joined mid-flow, nDPI matched it by port
    "quic.pcap": (1, 0),  # the same
    "quic_sh.pcap": (3, 0),  # short-header packets only
    "quic_interop_V.pcapng": (0, 63),  # 0x?a?a?a?a versions only: no salt exists
}

FlowKey = frozenset[Endpoint]


@dataclass
class _Flow:
    client: Endpoint
    key_dcid: bytes | None = None
    assembler: QuicClientHelloAssembler = field(default_factory=QuicClientHelloAssembler)
    sni: str | None = None
    user_agent: str | None = None
    done: bool = False


def _is_clear_gquic(payload: bytes) -> bool:
    if payload[0] & 0x80:
        return len(payload) > 5 and payload[1:4] in (b"Q04", b"Q05")
    return bool(payload[0] & 0x01) and len(payload) > 13 and payload[9:10] == b"Q"


def _observe(flow: _Flow, from_client: bool, payload: bytes, errors: Counter[str]) -> None:
    try:
        if _is_clear_gquic(payload):
            if from_client:
                chlo = decode_gquic(payload)
                flow.sni, flow.user_agent, flow.done = chlo.sni, chlo.uaid, True
            return
        header = decode_long_header(payload)
        if from_client and flow.key_dcid is None:
            flow.key_dcid = header.dcid
        if not from_client and header.packet_type is LongPacketType.RETRY:
            flow.key_dcid = None  # the client's next Initial keys on the Retry's SCID
            return
        for initial in decode_initials(payload, client_dcid=flow.key_dcid):
            assert initial.from_client == from_client
            hello = flow.assembler.add(initial)
            if hello is not None:
                flow.sni, flow.done = hello_sni(hello), True
                flow.user_agent = hello_user_agent(hello, initial.version)
    except DecodeError as exc:
        errors[exc.reason] += 1


def _our_flows(path: Path) -> tuple[dict[FlowKey, _Flow], Counter[str]]:
    flows: dict[FlowKey, _Flow] = {}
    errors: Counter[str] = Counter()
    for src, dst, payload in udp_datagrams(path):
        key = frozenset((src, dst))
        flow = flows.get(key)
        if flow is not None and flow.done:
            continue
        if not payload or not (is_quic_long_header(payload) or _is_clear_gquic(payload)):
            continue
        if flow is None:
            flow = flows[key] = _Flow(client=src)
        _observe(flow, src == flow.client, payload, errors)
    return flows, errors


def _ndpi_quic_flows(path: Path) -> dict[FlowKey, tuple[str | None, str | None]]:
    """nDPI's QUIC flows: flow -> (Hostname/SNI, User-Agent)."""
    return {
        ndpi_key(f): (
            f.fields.get("Hostname/SNI"),
            f.fields.get("User-Agent"),
        )
        for f in read_ndpi_out(path)
        if f.l4 == "UDP" and "QUIC" in f.proto
    }


@pytest.mark.corpus
@pytest.mark.parametrize("capture", CAPTURES)
def test_sni_agrees_with_ndpi(capture: str) -> None:
    path = NDPI / capture
    if not path.exists():
        pytest.skip(f"../shared not present: {path}")
    ours, errors = _our_flows(path)
    expected = _ndpi_quic_flows(NDPI / f"{capture}.out")
    assert expected, "nDPI lists QUIC flows in every capture chosen here"
    disagree = {}
    for key, (sni, ua) in expected.items():
        flow = ours.get(key)
        got = (flow.sni, flow.user_agent) if flow else (None, None)
        if got != (sni, ua):
            disagree[tuple(sorted(map(str, key)))] = (got, (sni, ua))
    assert disagree == {}, f"{len(disagree)}/{len(expected)} flows differ; errors {dict(errors)}"
    # Agreeing on "no SNI" must not hide a flow that was silently not decoded.
    absent = sum(key not in ours for key in expected)
    undecoded = sum(key in ours and not ours[key].done for key in expected)
    assert (absent, undecoded) == UNDECODABLE.get(capture, (0, 0))
    assert errors.get("quic.unknown_frame", 0) <= 1  # one late CHLO retransmission in quic.pcap


# --- Robustness ---------------------------------------------------------------------------------


def _samples() -> list[bytes]:
    samples = [RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL, RFC9001_SERVER_INITIAL]
    samples += [d for v in VERSIONS for d in client_flight(v)[1]]
    return samples


SAMPLES = _samples()


def _gquic_samples() -> list[bytes]:
    found: list[bytes] = []
    for name in ("quic.pcap", "quic046.pcap", "quic_q50.pcap", "gquic.pcap"):
        if (NDPI / name).exists():
            found += [p for _, _, p in udp_datagrams(NDPI / name) if p and _is_clear_gquic(p)][:4]
    return found


GQUIC_SAMPLES = _gquic_samples()


def _exercise(datagram: bytes) -> None:
    is_quic_long_header(datagram)
    for call in (
        lambda: decode_initials(datagram),
        lambda: decode_initials(datagram, client_dcid=RFC_DCID),
        lambda: decode_long_header(datagram),
        lambda: decode_gquic(datagram),
    ):
        try:
            result = call()
        except DecodeError:
            continue
        if isinstance(result, list):
            assembler = QuicClientHelloAssembler()
            for initial in result:
                try:
                    assembler.add(initial)
                except DecodeError:
                    break


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(sample=st.sampled_from(SAMPLES), cut=st.integers(0, 1300), tail=st.binary(max_size=64))
@example(sample=RFC9001_CLIENT_INITIAL, cut=6, tail=b"")
@example(sample=RFC9001_SERVER_INITIAL, cut=40, tail=bytes(64))
def test_fuzz_prefix_plus_random_bytes(sample: bytes, cut: int, tail: bytes) -> None:
    _exercise(sample[:cut] + tail)


@FUZZ
@given(
    sample=st.sampled_from(SAMPLES),
    flips=st.lists(st.tuples(st.integers(0, 80), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_fuzz_perturbed_datagrams(sample: bytes, flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(sample)
    for pos, xor in flips:  # the header and the first frames
        damaged[pos] ^= xor
    _exercise(bytes(damaged))


@pytest.mark.corpus
@pytest.mark.skipif(not GQUIC_SAMPLES, reason="../shared not present: no gQUIC samples")
@FUZZ
@given(
    sample=st.sampled_from(GQUIC_SAMPLES or [b""]),
    cut=st.integers(0, 1400),
    flip=st.tuples(st.integers(0, 200), st.integers(0, 255)),
    tail=st.binary(max_size=32),
)
def test_fuzz_gquic(sample: bytes, cut: int, flip: tuple[int, int], tail: bytes) -> None:
    damaged = bytearray(sample)
    damaged[flip[0] % len(damaged)] ^= flip[1]
    _exercise(bytes(damaged[:cut]) + tail)
