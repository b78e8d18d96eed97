package wire

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecode decodes body as the message carried by frame type typ. A body
// that decodes must re-encode to a body of the same length that differs from
// the input only where the encoder writes zero pad bytes, and that decodes to
// the same message.
func FuzzDecode(f *testing.F) {
	for i := range kinds {
		k := &kinds[i]
		f.Add(byte(k.t), body(k, k.sample(2, 3)))
	}
	f.Fuzz(func(t *testing.T, typ byte, in []byte) {
		k := kindOf(Type(typ))
		m1 := k.fresh()
		if err := m1.Decode(in); err != nil {
			if err != ErrMalformed {
				t.Fatalf("%s: Decode error %v, want ErrMalformed", k.name, err)
			}
			return
		}
		frame := k.append(nil, m1, 1, 0)
		out := frame[HeaderLen:]
		if len(out) != len(in) || int(le.Uint32(frame[8:])) != len(out) {
			t.Fatalf("%s: re-encoded body has %d bytes (length field %d), input %d",
				k.name, len(out), le.Uint32(frame[8:]), len(in))
		}
		for i := range in {
			if out[i] != in[i] && out[i] != 0 {
				t.Fatalf("%s: re-encoded body differs at byte %d: %#x, input %#x\n% x\n% x",
					k.name, i, out[i], in[i], out, in)
			}
		}
		m2 := k.fresh()
		if err := m2.Decode(out); err != nil {
			t.Fatalf("%s: decoding the re-encoded body: %v", k.name, err)
		}
		if !reflect.DeepEqual(m1, m2) {
			t.Fatalf("%s: decode(encode(decode(x))) =\n%+v\nwant\n%+v", k.name, m2, m1)
		}
		if again := k.append(nil, m2, 1, 0); !bytes.Equal(again, frame) {
			t.Fatalf("%s: encoding is not stable:\n% x\n% x", k.name, again, frame)
		}
	})
}

// FuzzReadFrame reads frames from a raw stream until an error. Every frame
// read must re-encode to the bytes it was read from.
func FuzzReadFrame(f *testing.F) {
	all, frames := stream()
	f.Add(all)
	f.Add(frames[0][:HeaderLen+1])
	f.Add(frameOfLen(MaxBody + 1))
	f.Add(append(frameOfLen(4), 1, 2, 3, 4, 0x0c))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var h Header
		var buf []byte
		for off := 0; ; {
			b, err := ReadFrame(r, &h, buf)
			switch err {
			case nil:
			case io.EOF:
				if off != len(in) {
					t.Fatalf("io.EOF at offset %d of %d", off, len(in))
				}
				return
			case io.ErrUnexpectedEOF:
				if len(in)-off >= HeaderLen && int(h.Len()) <= len(in)-off-HeaderLen {
					t.Fatalf("io.ErrUnexpectedEOF with a whole frame at %d", off)
				}
				return
			case ErrBadMagic:
				if h.Magic() == Magic {
					t.Fatalf("ErrBadMagic for magic %#x", h.Magic())
				}
				return
			case ErrTooLarge:
				if h.Len() <= MaxBody || len(b) != 0 {
					t.Fatalf("ErrTooLarge for length %d, body of %d bytes", h.Len(), len(b))
				}
				return
			default:
				t.Fatalf("unexpected error %v", err)
			}
			buf = b
			if len(b) != int(h.Len()) || len(b) > MaxBody {
				t.Fatalf("body of %d bytes, length field %d", len(b), h.Len())
			}
			n := HeaderLen + len(b)
			re := AppendFrame(nil, h.Type(), h.ID(), h.Status(), b)
			re[2] = h.Version()
			if !bytes.Equal(re, in[off:off+n]) {
				t.Fatalf("frame at %d re-encodes to\n% x\nwant\n% x", off, re, in[off:off+n])
			}
			off += n
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode from the message samples")

// corpusFile returns the name and contents of the FuzzDecode seed for k, in
// the format of `go test fuzz v1`.
func corpusFile(k *kind) (name string, data []byte) {
	name = strings.ToLower(strings.ReplaceAll(k.name, "/", "-"))
	data = fmt.Appendf(nil, "go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", byte(k.t), body(k, k.sample(2, 3)))
	return name, data
}

// TestFuzzCorpus checks that the checked-in FuzzDecode corpus holds one valid
// encoding per message kind. With -update-corpus it rewrites the corpus.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range kinds {
			name, data := corpusFile(&kinds[i])
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range kinds {
		k := &kinds[i]
		name, _ := corpusFile(k)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v (run go test -run=TestFuzzCorpus -update-corpus)", k.name, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 3 || lines[0] != "go test fuzz v1" ||
			!strings.HasPrefix(lines[1], "byte(") || !strings.HasPrefix(lines[2], "[]byte(") {
			t.Errorf("%s: not a corpus file:\n%s", name, data)
			continue
		}
		c, err1 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "byte("), ")"))
		b, err2 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
		typ := []rune(c)
		if err1 != nil || err2 != nil || len(typ) != 1 || typ[0] > 0xFF {
			t.Errorf("%s: bad values: %v %v", name, err1, err2)
			continue
		}
		if got := kindOf(Type(typ[0])); got != k {
			t.Errorf("%s: type %#x selects %s, want %s", name, typ[0], got.name, k.name)
		}
		if err := k.fresh().Decode([]byte(b)); err != nil {
			t.Errorf("%s: seed does not decode: %v (run go test -run=TestFuzzCorpus -update-corpus)", name, err)
		}
	}
}
