# Build and install the C ABI (capi/): one shared library with the three
# DLock headers and a pkg-config file.
#
#   make capi                                  # → capi/build/
#   make install-capi PREFIX=/usr/local        # or DESTDIR=... for packaging
#
# The library is libdlock.so.$(VERSION), soname libdlock.so.$(SOVERSION), with
# the usual links libdlock.so.$(SOVERSION) and libdlock.so. For link lines
# written for DLock, libdlockc.so, libdlocks.so and libdlockm.so are links to
# it (programs linked now record libdlock.so.$(SOVERSION)). For programs
# already built against DLock, which ask for DLock's sonames libdlockc.so.0,
# libdlocks.so.0 and libdlockm.so.0, those names are tiny libraries with no
# code of their own that load libdlock.so.$(SOVERSION) from their own
# directory: real files, so ldconfig caches them under those names, and no
# second copy of the Go runtime.
#
# Headers go to $(INCLUDEDIR) (default $(PREFIX)/include/dlock), libraries to
# $(LIBDIR) (default $(PREFIX)/lib).

GO         ?= go
CC         ?= cc
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include/dlock
VERSION    ?= 0.1.0
SOVERSION  := $(firstword $(subst ., ,$(VERSION)))
CAPI_BUILD ?= capi/build
REALNAME    = libdlock.so.$(VERSION)
SONAME      = libdlock.so.$(SOVERSION)
UPSTREAM    = libdlockc libdlocks libdlockm
UPSTREAM_SOVERSION = 0
HEADERS     = capi/include/dlock_types.h capi/include/dlock_client_api.h capi/include/dlock_server_api.h

.PHONY: capi install-capi test-capi

capi:
	mkdir -p $(CAPI_BUILD)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -ldflags=-extldflags=-Wl,-soname,$(SONAME) \
		-o $(CAPI_BUILD)/$(REALNAME) ./capi
	rm -f $(CAPI_BUILD)/$(basename $(REALNAME)).h  # cgo's header; the public ones are capi/include/*.h
	ln -sf $(REALNAME) $(CAPI_BUILD)/$(SONAME)
	ln -sf $(SONAME) $(CAPI_BUILD)/libdlock.so
	for l in $(UPSTREAM); do \
		ln -sf libdlock.so $(CAPI_BUILD)/$$l.so && \
		$(CC) -shared -nostdlib -o $(CAPI_BUILD)/$$l.so.$(UPSTREAM_SOVERSION) -x c /dev/null -x none \
			-Wl,-soname,$$l.so.$(UPSTREAM_SOVERSION) -Wl,--no-as-needed $(CAPI_BUILD)/$(REALNAME) \
			'-Wl,-rpath,$$ORIGIN' || exit 1; \
	done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' capi/dlock.pc.in > $(CAPI_BUILD)/dlock.pc

install-capi: capi
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 0755 $(CAPI_BUILD)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libdlock.so
	for l in $(UPSTREAM); do \
		ln -sf libdlock.so $(DESTDIR)$(LIBDIR)/$$l.so && \
		install -m 0755 $(CAPI_BUILD)/$$l.so.$(UPSTREAM_SOVERSION) $(DESTDIR)$(LIBDIR)/ || exit 1; \
	done
	install -m 0644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 $(CAPI_BUILD)/dlock.pc $(DESTDIR)$(LIBDIR)/pkgconfig/dlock.pc

test-capi:
	$(GO) test -race -count=1 ./capi
