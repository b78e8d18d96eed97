package dlockserver_test

import (
	"encoding/json"
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// TestAdminBadInput: admin requests with bodies that are not JSON, or
// unregistered, are answered with a status and leave the connection usable.
func TestAdminBadInput(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	r := dialRaw(t, srv.Addr)
	// Before registration: -1.
	r.write(wire.AppendFrame(nil, wire.TAdminLocks, 1, 0, []byte(`{}`)))
	if h, _, err := r.read(); err != nil || h.Status() != int32(dlock.ErrGeneric) {
		t.Fatalf("unregistered admin request: %v status %d, want -1", err, h.Status())
	}
	id := r.register()
	for i, body := range [][]byte{nil, []byte("{"), []byte(`{"prefix": 7, "n": "x", "name": 5}`), []byte(`[1,2]`), make([]byte, 1000)} {
		for _, typ := range []wire.Type{wire.TAdminLocks, wire.TAdminTop, wire.TAdminRelease} {
			r.write(wire.AppendFrame(nil, typ, uint32(10+i), id, body))
			h, rep, err := r.read()
			if err != nil || h.Type() != typ.Reply() || h.Status() != int32(dlock.ErrInval) || len(rep) != 0 {
				t.Fatalf("%v with body %q: %v type %v status %d body %q; want DLOCK_EINVAL, empty", typ, body, err, h.Type(), h.Status(), rep)
			}
		}
	}
	// Still served: an empty listing.
	r.write(wire.AppendFrame(nil, wire.TAdminLocks, 99, id, []byte(`{"prefix":"","limit":-5}`)))
	h, rep, err := r.read()
	if err != nil || h.Status() != 0 {
		t.Fatalf("listing: %v status %d", err, h.Status())
	}
	var page struct {
		Locks []json.RawMessage `json:"locks"`
		More  bool              `json:"more"`
	}
	if err := json.Unmarshal(rep, &page); err != nil || page.Locks == nil || len(page.Locks) != 0 || page.More {
		t.Fatalf("listing of an empty server: %s (%v)", rep, err)
	}
}
