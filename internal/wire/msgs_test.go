package wire

// The table of message kinds shared by the round-trip, stream and fuzz tests.

// decoder is what every message struct implements.
type decoder interface{ Decode([]byte) error }

// kind is one body layout carried under one frame type.
type kind struct {
	name  string
	t     Type // the frame's type field
	batch bool // the body starts with a count
	desc  bool // the body (or each item) carries a descriptor
	// fresh returns a zero message of the kind's struct.
	fresh func() decoder
	// sample returns a message with every encoded field set: n items for
	// batches, descriptors of dlen bytes.
	sample func(n, dlen int) decoder
	// append appends m as a frame of type t; word is the client id of a
	// request or the status of a reply.
	append func(dst []byte, m decoder, id uint32, word int32) []byte
}

func state(seed byte) (s [16]byte) {
	for i := range s {
		s[i] = seed + byte(i)*3
	}
	return s
}

func mkdesc(n int, seed byte) []byte {
	d := make([]byte, n)
	for i := range d {
		d[i] = seed + byte(i*7)
	}
	return d
}

func sampleGetLock(i, dlen int) GetLock {
	return GetLock{
		Preferred: 0x12345678 - int32(i),
		Lease:     uint32(1000 + i),
		Type:      uint8(i % 3),
		Desc:      mkdesc(dlen, byte(i)),
	}
}

func sampleLockOp(i int) LockOp {
	return LockOp{
		LockID: 0x7FFFFFF0 - int32(i),
		Cmd:    uint8(i % 8),
		Flags:  uint8(i%2) | FlagBlock,
		Arg:    state(byte(i)),
	}
}

func sampleLockResult(i int) LockResult {
	return LockResult{
		Status: []int32{0, -1, 0x1000, 0x2006}[i%4],
		State:  state(byte(0x40 + i)),
		Token:  0x0102030405060708 + uint64(i),
	}
}

func sampleUpdateLock(i, dlen int) UpdateLock {
	return UpdateLock{
		ID:    -1 - int32(i),
		Lease: uint32(i),
		Type:  uint8(i % 3),
		Hold:  uint8(i % 5),
		State: state(byte(0x80 + i)),
		Token: 0xFFFFFFFF00000000 | uint64(i),
		Desc:  mkdesc(dlen, byte(0x10+i)),
	}
}

func idKind(t Type) kind {
	return kind{
		name:   "ID/" + t.name(),
		t:      t,
		fresh:  func() decoder { return new(ID) },
		sample: func(int, int) decoder { return &ID{ID: -8207} },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*ID).Append(dst, t, id, w)
		},
	}
}

func idsKind(t Type) kind {
	return kind{
		name:  "IDs/" + t.name(),
		t:     t,
		batch: true,
		fresh: func() decoder { return new(IDs) },
		sample: func(n, _ int) decoder {
			m := &IDs{N: n}
			for i := 0; i < n; i++ {
				m.IDs[i] = []int32{1 + int32(i), -1, -8207, 0x7FFFFFFF - int32(i)}[i%4]
			}
			return m
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*IDs).Append(dst, t, id, w)
		},
	}
}

func initKind(t Type) kind {
	return kind{
		name:   "Init/" + t.name(),
		t:      t,
		fresh:  func() decoder { return new(Init) },
		sample: func(int, int) decoder { return &Init{MinVersion: 2, TPMode: 1} },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*Init).Append(dst, t, id, w)
		},
	}
}

func initReplyKind(req Type) kind {
	return kind{
		name:  "InitReply/" + req.name(),
		t:     req.Reply(),
		fresh: func() decoder { return new(InitReply) },
		sample: func(int, int) decoder {
			return &InitReply{ClientID: 0x7FFFFFFE, ServerState: StateWaitClientReinit, Version: Version}
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*InitReply).Append(dst, req, id, w)
		},
	}
}

func objectKind(t Type) kind {
	return kind{
		name:  "Object/" + t.name(),
		t:     t,
		desc:  true,
		fresh: func() decoder { return new(Object) },
		sample: func(_, dlen int) decoder {
			return &Object{Preferred: -5, Lease: 60, Init: 1 << 63, Desc: mkdesc(dlen, 0x33)}
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*Object).Append(dst, t, id, w)
		},
	}
}

func objOpKind(t Type) kind {
	return kind{
		name:  "ObjOp/" + t.name(),
		t:     t,
		fresh: func() decoder { return new(ObjOp) },
		sample: func(int, int) decoder {
			return &ObjOp{ID: 99, A: 0xFFFFFFFFFFFFFFFF, B: 0x8000000000000001}
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*ObjOp).Append(dst, t, id, w)
		},
	}
}

func objReplyKind(req Type) kind {
	return kind{
		name:   "ObjReply/" + req.name(),
		t:      req.Reply(),
		fresh:  func() decoder { return new(ObjReply) },
		sample: func(int, int) decoder { return &ObjReply{ID: 42, Value: 0xDEADBEEFCAFEF00D} },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*ObjReply).Append(dst, req, id, w)
		},
	}
}

// kinds lists every message body under every frame type that carries it.
var kinds = []kind{
	initKind(TInit),
	initKind(TReinit),
	initReplyKind(TInit),
	initReplyKind(TReinit),
	{
		name:   "GetLock",
		t:      TGetLock,
		desc:   true,
		fresh:  func() decoder { return new(GetLock) },
		sample: func(_, dlen int) decoder { m := sampleGetLock(0, dlen); return &m },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*GetLock).Append(dst, id, w)
		},
	},
	{
		name:   "GetLockReply",
		t:      TGetLock.Reply(),
		fresh:  func() decoder { return new(GetLockReply) },
		sample: func(int, int) decoder { return &GetLockReply{ID: 0x597728, Lease: 30, Type: 2} },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*GetLockReply).Append(dst, id, w)
		},
	},
	idKind(TReleaseLock),
	idKind(TObjRelease),
	idKind(TObjDestroy),
	idKind(TObjLoad),
	idKind(TCancel),
	{
		name:  "BatchGetLock",
		t:     TBatchGetLock,
		batch: true,
		desc:  true,
		fresh: func() decoder { return new(BatchGetLock) },
		sample: func(n, dlen int) decoder {
			m := &BatchGetLock{N: n}
			for i := 0; i < n; i++ {
				m.Items[i] = sampleGetLock(i, dlen)
			}
			return m
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*BatchGetLock).Append(dst, id, w)
		},
	},
	idsKind(TBatchRelease),
	idsKind(TBatchGetLock.Reply()),
	idsKind(TUpdateLocks.Reply()),
	{
		name:   "LockOp",
		t:      TLockOp,
		fresh:  func() decoder { return new(LockOp) },
		sample: func(int, int) decoder { m := sampleLockOp(3); m.WaitMillis = 1500; return &m },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*LockOp).Append(dst, id, w)
		},
	},
	{
		name:   "LockResult",
		t:      TLockOp.Reply(),
		fresh:  func() decoder { return new(LockResult) },
		sample: func(int, int) decoder { m := sampleLockResult(0); return &m },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*LockResult).Append(dst, id, w)
		},
	},
	{
		name:   "OpenLockOp",
		t:      TOpenLockOp,
		desc:   true,
		fresh:  func() decoder { return new(OpenLockOp) },
		sample: func(_, dlen int) decoder { return &OpenLockOp{Op: sampleLockOp(5), Open: sampleGetLock(1, dlen)} },
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*OpenLockOp).Append(dst, id, w)
		},
	},
	{
		name:  "BatchLockOp",
		t:     TBatchLockOp,
		batch: true,
		fresh: func() decoder { return new(BatchLockOp) },
		sample: func(n, _ int) decoder {
			m := &BatchLockOp{N: n}
			for i := 0; i < n; i++ {
				m.Items[i] = sampleLockOp(i)
			}
			return m
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*BatchLockOp).Append(dst, id, w)
		},
	},
	{
		name:  "BatchLockResult",
		t:     TBatchLockOp.Reply(),
		batch: true,
		fresh: func() decoder { return new(BatchLockResult) },
		sample: func(n, _ int) decoder {
			m := &BatchLockResult{N: n}
			for i := 0; i < n; i++ {
				m.Items[i] = sampleLockResult(i)
			}
			return m
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*BatchLockResult).Append(dst, id, w)
		},
	},
	{
		name:  "UpdateLocks",
		t:     TUpdateLocks,
		batch: true,
		desc:  true,
		fresh: func() decoder { return new(UpdateLocks) },
		sample: func(n, dlen int) decoder {
			m := &UpdateLocks{N: n}
			for i := 0; i < n; i++ {
				m.Items[i] = sampleUpdateLock(i, dlen)
			}
			return m
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*UpdateLocks).Append(dst, id, w)
		},
	},
	objectKind(TObjCreate),
	objectKind(TObjGet),
	objOpKind(TObjFAA),
	objOpKind(TObjCAS),
	objReplyKind(TObjCreate),
	objReplyKind(TObjGet),
	objReplyKind(TObjRelease),
	objReplyKind(TObjDestroy),
	objReplyKind(TObjFAA),
	objReplyKind(TObjCAS),
	objReplyKind(TObjLoad),
	{
		name:  "StatsReply",
		t:     TStats.Reply(),
		fresh: func() decoder { return new(StatsReply) },
		sample: func(int, int) decoder {
			m := new(StatsReply)
			for i := range m.Counters {
				m.Counters[i] = uint64(i)<<56 | uint64(i+1)
			}
			return m
		},
		append: func(dst []byte, m decoder, id uint32, w int32) []byte {
			return m.(*StatsReply).Append(dst, id, w)
		},
	},
}

// kindOf returns the kind decoded for a frame of type t (the first listed for
// t), or, for a type without a body of its own, one chosen by t's value so a
// fuzzer reaches every decoder.
func kindOf(t Type) *kind {
	for i := range kinds {
		if kinds[i].t == t {
			return &kinds[i]
		}
	}
	return &kinds[int(t)%len(kinds)]
}

// name is a short spelling of a type for test names and corpus files.
func (t Type) name() string {
	names := map[Type]string{
		TInit: "init", TReinit: "reinit", TReinitDone: "reinitdone", TDeinit: "deinit",
		THeartbeat: "heartbeat", TGetLock: "getlock", TReleaseLock: "releaselock",
		TBatchGetLock: "batchgetlock", TBatchRelease: "batchrelease", TLockOp: "lockop",
		TBatchLockOp: "batchlockop", TCancel: "cancel", TUpdateLocks: "updatelocks",
		TObjCreate: "objcreate", TObjGet: "objget", TObjRelease: "objrelease",
		TObjDestroy: "objdestroy", TObjFAA: "objfaa", TObjCAS: "objcas", TObjLoad: "objload",
		TStats: "stats", TResetStats: "resetstats", TOpenLockOp: "openlockop",
	}
	if t.IsReply() {
		if n, ok := names[t&^ReplyBit]; ok {
			return n + "-reply"
		}
	}
	if n, ok := names[t]; ok {
		return n
	}
	return "unknown"
}
