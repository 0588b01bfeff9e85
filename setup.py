"""The native half of the forwarding kernel, built at install time. It is optional: without a C compiler (or with
LIVECLASS_NATIVE=0) the SFU sends through its pure-Python path, which gives the same bytes on the wire."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("sfu.native._forward", ["sfu/native/forward.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall"])])
