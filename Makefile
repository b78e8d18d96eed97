# Build and install the C ABI (capi/): one shared library, libdlock.so, with
# libdlockc.so, libdlocks.so and libdlockm.so as links to it, the three
# DLock headers and a pkg-config file.
#
#   make capi                                  # → capi/build/
#   make install-capi PREFIX=/usr/local        # or DESTDIR=... for packaging
#
# Headers go to $(INCLUDEDIR) (default $(PREFIX)/include/dlock), libraries to
# $(LIBDIR) (default $(PREFIX)/lib).

GO         ?= go
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include/dlock
VERSION    ?= 0.1.0
CAPI_BUILD ?= capi/build
LINKS       = libdlockc.so libdlocks.so libdlockm.so
HEADERS     = capi/include/dlock_types.h capi/include/dlock_client_api.h capi/include/dlock_server_api.h

.PHONY: capi install-capi test-capi

capi:
	mkdir -p $(CAPI_BUILD)
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -ldflags=-extldflags=-Wl,-soname,libdlock.so \
		-o $(CAPI_BUILD)/libdlock.so ./capi
	rm -f $(CAPI_BUILD)/libdlock.h  # cgo's header; the public ones are capi/include/*.h
	for l in $(LINKS); do ln -sf libdlock.so $(CAPI_BUILD)/$$l; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' capi/dlock.pc.in > $(CAPI_BUILD)/dlock.pc

install-capi: capi
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 0755 $(CAPI_BUILD)/libdlock.so $(DESTDIR)$(LIBDIR)/libdlock.so
	for l in $(LINKS); do ln -sf libdlock.so $(DESTDIR)$(LIBDIR)/$$l; done
	install -m 0644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 $(CAPI_BUILD)/dlock.pc $(DESTDIR)$(LIBDIR)/pkgconfig/dlock.pc

test-capi:
	$(GO) test -race -count=1 ./capi
