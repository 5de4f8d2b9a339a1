"""A bare UCX peer (ctypes over libucp) for tests that must send what no
engine would: active messages with hand-made headers, the way a hostile or
broken process on the same host could. Loopback and shared memory only."""

import ctypes
import ctypes.util
import struct
import time

_lib = None


def _ucp():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("ucp") or "libucp.so.0"
        lib = ctypes.CDLL(name)
        vp, u64 = ctypes.c_void_p, ctypes.c_uint64
        lib.ucp_config_read.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(vp)]
        lib.ucp_config_modify.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p]
        lib.ucp_config_release.argtypes = [vp]
        lib.ucp_init_version.argtypes = [ctypes.c_uint, ctypes.c_uint, vp, vp, ctypes.POINTER(vp)]
        lib.ucp_cleanup.argtypes = [vp]
        lib.ucp_worker_create.argtypes = [vp, vp, ctypes.POINTER(vp)]
        lib.ucp_worker_destroy.argtypes = [vp]
        lib.ucp_worker_get_address.argtypes = [
            vp,
            ctypes.POINTER(vp),
            ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.ucp_worker_release_address.argtypes = [vp, vp]
        lib.ucp_worker_progress.argtypes = [vp]
        lib.ucp_ep_create.argtypes = [vp, vp, ctypes.POINTER(vp)]
        lib.ucp_ep_destroy.argtypes = [vp]
        lib.ucp_am_send_nbx.argtypes = [
            vp,
            ctypes.c_uint,
            vp,
            ctypes.c_size_t,
            vp,
            ctypes.c_size_t,
            vp,
        ]
        lib.ucp_am_send_nbx.restype = ctypes.c_void_p
        lib.ucp_request_check_status.argtypes = [vp]
        lib.ucp_request_free.argtypes = [vp]
        del u64
        _lib = lib
    return _lib


UCP_FEATURE_AM = 1 << 6
UCP_PARAM_FIELD_FEATURES = 1
UCP_EP_PARAM_FIELD_REMOTE_ADDRESS = 1
UCS_INPROGRESS = 1
AM_HELLO = 1
AM_REQUEST = 2
WIRE_MAGIC = 0x594B4E31  # "YKN1"


def wire_header(rpc=0, provider=0, seq=1, token=0, meta_len=0, flags=0, reserved=0):
    """The engine's 40-byte WireHeader (src/engine/wire_format.hpp), host order."""
    return struct.pack(
        "=IHHQQiIIHH", WIRE_MAGIC, rpc, provider, seq, token, 0, meta_len, 0, flags, reserved
    )


class RawPeer:
    """A UCX context, worker and endpoint to one server worker address."""

    def __init__(self, tls="tcp,sm,self"):
        lib = _ucp()
        cfg = ctypes.c_void_p()
        assert lib.ucp_config_read(None, None, ctypes.byref(cfg)) == 0
        for k, v in (("TLS", tls), ("NET_DEVICES", "lo")):
            assert lib.ucp_config_modify(cfg, k.encode(), v.encode()) == 0
        params = (ctypes.c_uint64 * 32)()  # ucp_params_t, zeroed beyond the two fields we set
        params[0] = UCP_PARAM_FIELD_FEATURES
        params[1] = UCP_FEATURE_AM
        self.ctx = ctypes.c_void_p()
        st = lib.ucp_init_version(1, 13, params, cfg, ctypes.byref(self.ctx))
        lib.ucp_config_release(cfg)
        assert st == 0, st
        wparams = (ctypes.c_uint64 * 32)()
        self.worker = ctypes.c_void_p()
        assert lib.ucp_worker_create(self.ctx, wparams, ctypes.byref(self.worker)) == 0
        self.ep = None

    def address(self):
        """This worker's own (valid) UCX address."""
        lib = _ucp()
        addr, size = ctypes.c_void_p(), ctypes.c_size_t()
        assert lib.ucp_worker_get_address(self.worker, ctypes.byref(addr), ctypes.byref(size)) == 0
        out = ctypes.string_at(addr, size.value)
        lib.ucp_worker_release_address(self.worker, addr)
        return out

    def connect(self, server_worker_address):
        lib = _ucp()
        self._remote = ctypes.create_string_buffer(server_worker_address)
        eparams = (ctypes.c_uint64 * 32)()  # ucp_ep_params_t: field_mask, address, ...
        eparams[0] = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS
        eparams[1] = ctypes.cast(self._remote, ctypes.c_void_p).value
        self.ep = ctypes.c_void_p()
        assert lib.ucp_ep_create(self.worker, eparams, ctypes.byref(self.ep)) == 0

    def send(self, am_id, header, body=b"", timeout=5.0):
        """Sends one active message and waits until UCX has sent it."""
        lib = _ucp()
        hbuf = ctypes.create_string_buffer(header, len(header))
        bbuf = ctypes.create_string_buffer(body, max(1, len(body)))
        param = (ctypes.c_uint64 * 32)()  # ucp_request_param_t with no fields
        req = lib.ucp_am_send_nbx(self.ep, am_id, hbuf, len(header), bbuf, len(body), param)
        if req is None:
            return True
        if req >= (1 << 64) - 100:  # UCS_PTR_IS_ERR
            return False
        deadline = time.monotonic() + timeout
        while lib.ucp_request_check_status(req) == UCS_INPROGRESS:
            lib.ucp_worker_progress(self.worker)
            if time.monotonic() > deadline:
                return False
        lib.ucp_request_free(req)
        return True

    def progress(self, seconds):
        lib = _ucp()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            lib.ucp_worker_progress(self.worker)

    def close(self):
        lib = _ucp()
        if self.ep:
            lib.ucp_ep_destroy(self.ep)
            self.ep = None
        lib.ucp_worker_destroy(self.worker)
        lib.ucp_cleanup(self.ctx)
