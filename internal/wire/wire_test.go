package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// sizes returns the (n, dlen) pairs a kind is exercised with.
func sizes(k *kind) [][2]int {
	var ns, ds []int
	if k.batch {
		ns = []int{1, 2, MaxBatch}
	} else {
		ns = []int{1}
	}
	if k.desc {
		ds = []int{1, 7, MaxDesc}
	} else {
		ds = []int{0}
	}
	var out [][2]int
	for _, n := range ns {
		for _, d := range ds {
			out = append(out, [2]int{n, d})
		}
	}
	return out
}

// body returns the body of a frame built by k.
func body(k *kind, m decoder) []byte {
	return k.append(nil, m, 1, 0)[HeaderLen:]
}

func TestRoundTrip(t *testing.T) {
	largest := 0
	for i := range kinds {
		k := &kinds[i]
		for _, sz := range sizes(k) {
			t.Run(fmt.Sprintf("%s/n=%d/desc=%d", k.name, sz[0], sz[1]), func(t *testing.T) {
				want := k.sample(sz[0], sz[1])
				id := uint32(0xA0000000) + uint32(i)
				word := int32(-1 - i)
				frame := k.append(nil, want, id, word)

				var h Header
				got, err := ReadFrame(bytes.NewReader(frame), &h, nil)
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				if err := h.Check(); err != nil {
					t.Errorf("Check: %v", err)
				}
				if h.Magic() != Magic || h.Version() != Version || h.Type() != k.t ||
					h.ID() != id || h.Status() != word || h.Client() != word {
					t.Errorf("header = magic %#x version %d type %#x id %#x word %d; want %#x %d %#x %#x %d",
						h.Magic(), h.Version(), h.Type(), h.ID(), h.Status(),
						Magic, Version, k.t, id, word)
				}
				if int(h.Len()) != len(frame)-HeaderLen || len(got) != int(h.Len()) {
					t.Errorf("length field %d, body %d, frame %d", h.Len(), len(got), len(frame))
				}
				if len(got) > MaxBody {
					t.Errorf("body of %d bytes exceeds MaxBody", len(got))
				}
				largest = max(largest, len(got))

				m := k.fresh()
				if err := m.Decode(got); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !reflect.DeepEqual(m, want) {
					t.Errorf("Decode(Append(m)) =\n%+v\nwant\n%+v", m, want)
				}

				// A frame built by AppendFrame from the same body is identical,
				// also when appended after other bytes.
				prefix := []byte("prefix")
				f2 := AppendFrame(bytes.Clone(prefix), h.Type(), h.ID(), h.Status(), got)
				if !bytes.Equal(f2[len(prefix):], frame) || !bytes.Equal(f2[:len(prefix)], prefix) {
					t.Errorf("AppendFrame = % x\nwant % x", f2[len(prefix):], frame)
				}
				f3 := k.append(bytes.Clone(prefix), want, id, word)
				if !bytes.Equal(f3[len(prefix):], frame) {
					t.Errorf("Append after a prefix = % x\nwant % x", f3[len(prefix):], frame)
				}
			})
		}
	}
	// The largest message, a recovery batch of 31 locks with the longest
	// descriptors, must fit.
	if want := 4 + MaxBatch*(36+MaxDesc); largest != want {
		t.Errorf("largest body = %d, want %d", largest, want)
	}
}

func TestTypes(t *testing.T) {
	for _, k := range kinds {
		if k.t == TUnknownReply || k.t&^ReplyBit == 0 {
			t.Errorf("%s: type %#x is not a message type", k.name, k.t)
		}
	}
	if TUnknownReply&^ReplyBit != maxRequestType {
		t.Errorf("TUnknownReply = %#x, want the reply of the highest request type", TUnknownReply)
	}
	if TLockOp.IsReply() || !TLockOp.Reply().IsReply() || TLockOp.Reply() != 0xA0 {
		t.Errorf("Reply/IsReply wrong for TLockOp")
	}
	if TLockOp.Reply().Reply() != TLockOp.Reply() {
		t.Errorf("Reply is not idempotent")
	}
	if !TUnknownReply.IsReply() {
		t.Errorf("TUnknownReply is not a reply")
	}
	if MaxBatch != 31 || MaxDesc != 512 || MaxBody != 32768 || HeaderLen != 16 || Version != 2 {
		t.Errorf("limits changed: batch %d desc %d body %d header %d version %d",
			MaxBatch, MaxDesc, MaxBody, HeaderLen, Version)
	}
}

// unhex decodes hex written with spaces, newlines and | separators.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden pins the byte layout of the header and of the main messages.
func TestGolden(t *testing.T) {
	var batch BatchLockOp
	batch.N = 2
	batch.Items[0] = LockOp{LockID: 5, Cmd: 1, Arg: [16]byte{0: 7, 4: 0x1e}}
	batch.Items[1] = LockOp{LockID: 6, Cmd: 5, Arg: [16]byte{0: 0x64}}
	var update UpdateLocks
	update.N = 1
	update.Items[0] = UpdateLock{ID: 9, Lease: 0x20, Type: 1,
		State: [16]byte{0: 0x64, 4: 7, 8: 1}, Token: 0x1122, Desc: []byte("x")}
	var ids IDs
	ids.N = 2
	ids.IDs[0], ids.IDs[1] = 3, -8207

	tests := []struct {
		name  string
		frame []byte
		want  string
	}{{
		name: "LockOp",
		frame: (&LockOp{LockID: 5, Cmd: 0, Flags: FlagBlock,
			Arg: [16]byte{0: 7, 4: 0x1e}, WaitMillis: 1500}).Append(nil, 0x11223344, 7),
		// magic | version type | id | length | client
		want: `0cd1 | 02 20 | 44332211 | 1c000000 | 07000000
		       05000000 | 00 01 0000 | 07000000 1e000000 0000000000000000 | dc050000`,
	}, {
		name: "LockResult",
		frame: (&LockResult{State: [16]byte{0: 7, 4: 0x00, 5: 0xf1, 6: 0x53, 7: 0x65},
			Token: 0x0102030405060708}).Append(nil, 0x11223344, 0x2006),
		want: `0cd1 | 02 a0 | 44332211 | 18000000 | 06200000
		       07000000 00f15365 0000000000000000 | 0807060504030201`,
	}, {
		name:  "GetLock",
		frame: (&GetLock{Preferred: 0x597728, Lease: 10, Type: 2, Desc: []byte("ab")}).Append(nil, 1, 7),
		want: `0cd1 | 02 10 | 01000000 | 0e000000 | 07000000
		       28775900 | 0a000000 | 02 00 | 0200 6162`,
	}, {
		name:  "GetLockReply/-1",
		frame: (&GetLockReply{}).Append(nil, 1, -1)[:HeaderLen],
		want:  `0cd1 | 02 90 | 01000000 | 0c000000 | ffffffff`,
	}, {
		name:  "BatchLockOp/2",
		frame: batch.Append(nil, 2, 7),
		want: `0cd1 | 02 21 | 02000000 | 34000000 | 07000000
		       02 000000
		       05000000 | 01 00 0000 | 07000000 1e000000 0000000000000000
		       06000000 | 05 00 0000 | 64000000 00000000 0000000000000000`,
	}, {
		name:  "BatchLockResult/1",
		frame: (&BatchLockResult{N: 1, Items: [MaxBatch]LockResult{{Status: 0x1000, State: [16]byte{0: 1}, Token: 9}}}).Append(nil, 3, 0),
		want: `0cd1 | 02 a1 | 03000000 | 20000000 | 00000000
		       01 000000
		       00100000 | 01000000 00000000 0000000000000000 | 0900000000000000`,
	}, {
		name:  "Init",
		frame: (&Init{MinVersion: 2, TPMode: 1}).Append(nil, TInit, 0x10, 0),
		want:  `0cd1 | 02 01 | 10000000 | 04000000 | 00000000 | 02 01 0000`,
	}, {
		name:  "InitReply",
		frame: (&InitReply{ClientID: 0x01020304, ServerState: StateReady, Version: 2}).Append(nil, TReinit, 0x10, 0),
		want:  `0cd1 | 02 82 | 10000000 | 08000000 | 00000000 | 04030201 | 03 02 0000`,
	}, {
		name:  "IDs/BatchGetLockReply",
		frame: ids.Append(nil, TBatchGetLock.Reply(), 4, 0),
		want:  `0cd1 | 02 92 | 04000000 | 0c000000 | 00000000 | 02 000000 | 03000000 | f1dfffff`,
	}, {
		name:  "UpdateLocks/1",
		frame: update.Append(nil, 5, 7),
		want: `0cd1 | 02 23 | 05000000 | 29000000 | 07000000
		       01 000000
		       09000000 | 20000000 | 01 00 | 64000000 07000000 01000000 00000000 | 2211000000000000 | 0100 78`,
	}, {
		name:  "ObjOp/CAS",
		frame: (&ObjOp{ID: 42, A: 1, B: 2}).Append(nil, TObjCAS, 6, 7),
		want: `0cd1 | 02 35 | 06000000 | 18000000 | 07000000
		       2a000000 | 00000000 | 0100000000000000 | 0200000000000000`,
	}, {
		name:  "Object/Create",
		frame: (&Object{Preferred: 1, Lease: 2, Init: 3, Desc: []byte("o")}).Append(nil, TObjCreate, 8, 7),
		want: `0cd1 | 02 30 | 08000000 | 13000000 | 07000000
		       01000000 | 02000000 | 0300000000000000 | 0100 6f`,
	}, {
		name:  "ObjReply/FAA",
		frame: (&ObjReply{ID: 42, Value: 0x10}).Append(nil, TObjFAA, 9, 0),
		want:  `0cd1 | 02 b4 | 09000000 | 10000000 | 00000000 | 2a000000 | 00000000 | 1000000000000000`,
	}, {
		name:  "ID/Cancel",
		frame: (&ID{ID: 0x0a0b0c0d}).Append(nil, TCancel, 10, 7),
		want:  `0cd1 | 02 22 | 0a000000 | 04000000 | 07000000 | 0d0c0b0a`,
	}, {
		name:  "AppendFrame/empty",
		frame: AppendFrame(nil, THeartbeat, 0xFFFFFFFF, 0x7FFFFFFF, nil),
		want:  `0cd1 | 02 05 | ffffffff | 00000000 | ffffff7f`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if want := unhex(t, tt.want); !bytes.Equal(tt.frame, want) {
				t.Errorf("got  % x\nwant % x", tt.frame, want)
			}
		})
	}
}

func TestHeaderGolden(t *testing.T) {
	h := Header(unhex(t, `0cd1 02 a0 44332211 1c000000 feffffff`))
	if h.Magic() != 0xD10C || h.Version() != 2 || h.Type() != TLockOp.Reply() ||
		h.ID() != 0x11223344 || h.Len() != 28 || h.Status() != -2 || h.Client() != -2 {
		t.Errorf("accessors: %#x %d %#x %#x %d %d", h.Magic(), h.Version(), h.Type(), h.ID(), h.Len(), h.Status())
	}
	if err := h.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	// Check does not look at the version: the server answers a wrong one.
	h[2] = 1
	if err := h.Check(); err != nil {
		t.Errorf("Check with version 1: %v", err)
	}
	h[0] = 0x0d
	if err := h.Check(); err != ErrBadMagic {
		t.Errorf("Check with bad magic = %v, want ErrBadMagic", err)
	}
	h = Header(unhex(t, `0cd1 02 20 00000000 01800000 00000000`))
	if err := h.Check(); err != ErrTooLarge {
		t.Errorf("Check with length MaxBody+1 = %v, want ErrTooLarge", err)
	}
	h = Header(unhex(t, `0cd1 02 20 00000000 00800000 00000000`))
	if err := h.Check(); err != nil {
		t.Errorf("Check with length MaxBody = %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for i := range kinds {
		k := &kinds[i]
		t.Run(k.name, func(t *testing.T) {
			n := 1
			if k.batch {
				n = 3
			}
			valid := body(k, k.sample(n, 5))

			for j := 0; j < len(valid); j++ {
				if err := k.fresh().Decode(valid[:j]); err != ErrMalformed {
					t.Errorf("Decode(prefix of %d of %d bytes) = %v, want ErrMalformed", j, len(valid), err)
				}
			}
			for _, extra := range [][]byte{{0}, {1}, make([]byte, 40)} {
				b := append(bytes.Clone(valid), extra...)
				if err := k.fresh().Decode(b); err != ErrMalformed {
					t.Errorf("Decode(body + %d trailing bytes) = %v, want ErrMalformed", len(extra), err)
				}
			}

			if k.batch {
				for _, c := range []byte{0, MaxBatch + 1, 255} {
					b := bytes.Clone(valid)
					b[0] = c
					if err := k.fresh().Decode(b); err != ErrMalformed {
						t.Errorf("Decode(count %d) = %v, want ErrMalformed", c, err)
					}
				}
				// A count of 32 with 32 well-formed items is still refused.
				if !k.desc {
					big := body(k, k.sample(MaxBatch, 5))
					itemLen := (len(big) - 4) / MaxBatch
					b := append(bytes.Clone(big), big[4:4+itemLen]...)
					b[0] = MaxBatch + 1
					if err := k.fresh().Decode(b); err != ErrMalformed {
						t.Errorf("Decode(32 items) = %v, want ErrMalformed", err)
					}
				}
			}

			if k.desc {
				for _, dlen := range []int{0, MaxDesc + 1, 0xFFFF} {
					b := body(k, k.sample(n, dlen))
					if err := k.fresh().Decode(b); err != ErrMalformed {
						t.Errorf("Decode(descriptor of %d bytes) = %v, want ErrMalformed", dlen, err)
					}
				}
				if k.batch {
					// Only the last item is bad.
					m := k.sample(2, 5)
					switch m := m.(type) {
					case *BatchGetLock:
						m.Items[1].Desc = nil
					case *UpdateLocks:
						m.Items[1].Desc = make([]byte, MaxDesc+1)
					}
					if err := k.fresh().Decode(body(k, m)); err != ErrMalformed {
						t.Errorf("Decode(bad descriptor in item 2) = %v, want ErrMalformed", err)
					}
				}
			}
		})
	}
}

// TestDecodeAliases checks that descriptors alias the body (documented) and
// that pad bytes are ignored.
func TestDecodeAliases(t *testing.T) {
	k := kindOf(TGetLock)
	b := body(k, k.sample(1, 3))
	var m GetLock
	if err := m.Decode(b); err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xFF
	if m.Desc[2] != b[len(b)-1] {
		t.Errorf("Desc does not alias the body")
	}
	b[9] = 0xEE // pad after Type
	if err := m.Decode(b); err != nil {
		t.Errorf("Decode with a non-zero pad byte: %v", err)
	}
}

func frameOfLen(n uint32) []byte {
	f := AppendFrame(nil, TLockOp, 1, 7, nil)
	le.PutUint32(f[8:], n)
	return f
}

func TestReadFrameErrors(t *testing.T) {
	var h Header
	valid := kinds[0].append(nil, kinds[0].sample(1, 0), 1, 0)

	t.Run("BadMagic", func(t *testing.T) {
		f := bytes.Clone(valid)
		f[1] = 0xD0
		if _, err := ReadFrame(bytes.NewReader(f), &h, nil); err != ErrBadMagic {
			t.Errorf("err = %v, want ErrBadMagic", err)
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		for _, n := range []uint32{MaxBody + 1, 1 << 31, 0xFFFFFFFF} {
			f := frameOfLen(n)
			buf := []byte{1, 2, 3, 4}
			got, err := ReadFrame(bytes.NewReader(f), &h, buf[:1])
			if err != ErrTooLarge {
				t.Errorf("length %d: err = %v, want ErrTooLarge", n, err)
			}
			if len(got) != 0 || !bytes.Equal(buf, []byte{1, 2, 3, 4}) {
				t.Errorf("length %d: returned %d bytes, buf now % x", n, len(got), buf)
			}
			// Nothing is allocated for a body that is refused.
			r := bytes.NewReader(f)
			allocs := testing.AllocsPerRun(100, func() {
				r.Reset(f)
				if _, err := ReadFrame(r, &h, nil); err != ErrTooLarge {
					t.Fatalf("err = %v", err)
				}
			})
			if allocs != 0 {
				t.Errorf("length %d: %v allocations, want 0", n, allocs)
			}
		}
	})

	t.Run("MaxBody", func(t *testing.T) {
		f := append(frameOfLen(MaxBody), make([]byte, MaxBody)...)
		got, err := ReadFrame(bytes.NewReader(f), &h, nil)
		if err != nil || len(got) != MaxBody {
			t.Errorf("ReadFrame = %d bytes, %v", len(got), err)
		}
	})

	t.Run("EmptyBody", func(t *testing.T) {
		f := AppendFrame(nil, THeartbeat, 3, 7, nil)
		got, err := ReadFrame(bytes.NewReader(f), &h, nil)
		if err != nil || len(got) != 0 || h.Type() != THeartbeat {
			t.Errorf("ReadFrame = %d bytes, %v, type %#x", len(got), err, h.Type())
		}
	})

	t.Run("TruncatedBody", func(t *testing.T) {
		for cut := HeaderLen; cut < len(valid); cut++ {
			_, err := ReadFrame(bytes.NewReader(valid[:cut]), &h, nil)
			if err != io.ErrUnexpectedEOF {
				t.Errorf("cut at %d: err = %v, want io.ErrUnexpectedEOF", cut, err)
			}
		}
	})

	t.Run("TruncatedHeader", func(t *testing.T) {
		if _, err := ReadFrame(bytes.NewReader(nil), &h, nil); err != io.EOF {
			t.Errorf("empty stream: err = %v, want io.EOF", err)
		}
		for cut := 1; cut < HeaderLen; cut++ {
			_, err := ReadFrame(bytes.NewReader(valid[:cut]), &h, nil)
			if err != io.ErrUnexpectedEOF {
				t.Errorf("cut at %d: err = %v, want io.ErrUnexpectedEOF", cut, err)
			}
		}
	})

	t.Run("ReaderError", func(t *testing.T) {
		boom := errors.New("boom")
		if _, err := ReadFrame(iotest.ErrReader(boom), &h, nil); err != boom {
			t.Errorf("header: err = %v, want boom", err)
		}
		r := io.MultiReader(bytes.NewReader(valid[:HeaderLen+1]), iotest.ErrReader(boom))
		if _, err := ReadFrame(r, &h, nil); err != boom {
			t.Errorf("body: err = %v, want boom", err)
		}
	})

	t.Run("WrongVersionPasses", func(t *testing.T) {
		f := bytes.Clone(valid)
		f[2] = 1
		if _, err := ReadFrame(bytes.NewReader(f), &h, nil); err != nil || h.Version() != 1 {
			t.Errorf("err = %v, version %d; the version is the server's to answer", err, h.Version())
		}
	})

	t.Run("ReusesBuf", func(t *testing.T) {
		buf := make([]byte, 0, 64)
		got, err := ReadFrame(bytes.NewReader(valid), &h, buf)
		if err != nil || &got[:1][0] != &buf[:1][0] {
			t.Errorf("body does not reuse buf (err %v)", err)
		}
	})
}

// stream returns every kind's sample frame concatenated, and the frames.
func stream() ([]byte, [][]byte) {
	var all []byte
	var frames [][]byte
	for i := range kinds {
		k := &kinds[i]
		f := k.append(nil, k.sample(2, 3), uint32(i), int32(i))
		frames = append(frames, f)
		all = append(all, f...)
	}
	return all, frames
}

// readAll reads frames from r, checking them against want, then io.EOF.
func readAll(t *testing.T, r io.Reader, want [][]byte) {
	t.Helper()
	var h Header
	var buf []byte
	for i, f := range want {
		got, err := ReadFrame(r, &h, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		buf = got
		if !bytes.Equal(h[:], f[:HeaderLen]) || !bytes.Equal(got, f[HeaderLen:]) {
			t.Fatalf("frame %d: got % x % x\nwant % x", i, h[:], got, f)
		}
		k := kindOf(h.Type())
		if err := k.fresh().Decode(got); err != nil {
			t.Fatalf("frame %d (%s): Decode: %v", i, k.name, err)
		}
	}
	if _, err := ReadFrame(r, &h, buf); err != io.EOF {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}
}

func TestStreamSplit(t *testing.T) {
	all, frames := stream()
	t.Run("OneByte", func(t *testing.T) {
		readAll(t, iotest.OneByteReader(bytes.NewReader(all)), frames)
	})
	t.Run("Half", func(t *testing.T) {
		readAll(t, iotest.HalfReader(bytes.NewReader(all)), frames)
	})
	t.Run("DataErr", func(t *testing.T) {
		readAll(t, iotest.DataErrReader(bytes.NewReader(all)), frames)
	})
	t.Run("EveryBoundary", func(t *testing.T) {
		for k := 0; k <= len(all); k++ {
			r := io.MultiReader(bytes.NewReader(all[:k]), bytes.NewReader(all[k:]))
			readAll(t, r, frames)
		}
	})
}

// Allocation budgets of the hot path.

func TestAllocs(t *testing.T) {
	dst := make([]byte, 0, 2048)
	lockOp := sampleLockOp(1)
	lockRes := sampleLockResult(0)
	objOp := ObjOp{ID: 1, A: 2, B: 3}
	objReply := ObjReply{ID: 1, Value: 2}
	var batch BatchLockOp
	batch.N = MaxBatch
	for i := range batch.Items {
		batch.Items[i] = sampleLockOp(i)
	}
	var h Header
	frame := lockOp.Append(nil, 1, 7)
	r := bytes.NewReader(frame)
	buf := make([]byte, 0, MaxBody)

	var decLockOp LockOp
	var decLockRes LockResult
	var decObjOp ObjOp
	var decObjReply ObjReply
	var decBatch BatchLockOp
	lockOpBody := lockOp.Append(nil, 1, 7)[HeaderLen:]
	lockResBody := lockRes.Append(nil, 1, 0)[HeaderLen:]
	objOpBody := objOp.Append(nil, TObjFAA, 1, 7)[HeaderLen:]
	objReplyBody := objReply.Append(nil, TObjFAA, 1, 0)[HeaderLen:]
	batchBody := batch.Append(nil, 1, 7)[HeaderLen:]

	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    func()
	}{
		{"LockOp.Append", func() { dst = lockOp.Append(dst[:0], 1, 7) }},
		{"LockOp.Decode", func() { must(decLockOp.Decode(lockOpBody)) }},
		{"LockResult.Append", func() { dst = lockRes.Append(dst[:0], 1, 0) }},
		{"LockResult.Decode", func() { must(decLockRes.Decode(lockResBody)) }},
		{"ObjOp.Append", func() { dst = objOp.Append(dst[:0], TObjFAA, 1, 7) }},
		{"ObjOp.Decode", func() { must(decObjOp.Decode(objOpBody)) }},
		{"ObjReply.Append", func() { dst = objReply.Append(dst[:0], TObjFAA, 1, 0) }},
		{"ObjReply.Decode", func() { must(decObjReply.Decode(objReplyBody)) }},
		{"BatchLockOp.Append", func() { dst = batch.Append(dst[:0], 1, 7) }},
		{"BatchLockOp.Decode", func() { must(decBatch.Decode(batchBody)) }},
		{"ReadFrame", func() {
			r.Reset(frame)
			b, err := ReadFrame(r, &h, buf)
			must(err)
			buf = b
		}},
	}
	for _, tt := range tests {
		if a := testing.AllocsPerRun(100, tt.f); a != 0 {
			t.Errorf("%s: %v allocations, want 0", tt.name, a)
		}
	}
}

func BenchmarkLockOpAppend(b *testing.B) {
	m := sampleLockOp(1)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Append(dst[:0], 1, 7)
	}
}

func BenchmarkLockOpDecode(b *testing.B) {
	in := sampleLockOp(1)
	body := in.Append(nil, 1, 7)[HeaderLen:]
	var m LockOp
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLockResultAppend(b *testing.B) {
	m := sampleLockResult(0)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Append(dst[:0], 1, 0)
	}
}

func BenchmarkLockResultDecode(b *testing.B) {
	in := sampleLockResult(0)
	body := in.Append(nil, 1, 0)[HeaderLen:]
	var m LockResult
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObjOpAppend(b *testing.B) {
	m := ObjOp{ID: 1, A: 2, B: 3}
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Append(dst[:0], TObjFAA, 1, 7)
	}
}

func BenchmarkObjOpDecode(b *testing.B) {
	in := ObjOp{ID: 1, A: 2, B: 3}
	body := in.Append(nil, TObjFAA, 1, 7)[HeaderLen:]
	var m ObjOp
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObjReplyAppend(b *testing.B) {
	m := ObjReply{ID: 1, Value: 2}
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Append(dst[:0], TObjFAA, 1, 0)
	}
}

func BenchmarkObjReplyDecode(b *testing.B) {
	in := ObjReply{ID: 1, Value: 2}
	body := in.Append(nil, TObjFAA, 1, 0)[HeaderLen:]
	var m ObjReply
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func batch31() *BatchLockOp {
	m := &BatchLockOp{N: MaxBatch}
	for i := range m.Items {
		m.Items[i] = sampleLockOp(i)
	}
	return m
}

func BenchmarkBatchLockOpAppend(b *testing.B) {
	m := batch31()
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Append(dst[:0], 1, 7)
	}
	b.SetBytes(int64(len(dst)))
}

func BenchmarkBatchLockOpDecode(b *testing.B) {
	body := batch31().Append(nil, 1, 7)[HeaderLen:]
	var m BatchLockOp
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := m.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFrame(b *testing.B) {
	in := sampleLockOp(1)
	frame := in.Append(nil, 1, 7)
	r := bytes.NewReader(frame)
	var h Header
	buf := make([]byte, 0, MaxBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		r.Reset(frame)
		var err error
		if buf, err = ReadFrame(r, &h, buf); err != nil {
			b.Fatal(err)
		}
	}
}
