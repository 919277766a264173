// A Go offset store of its own layout, as a lance-offsets driver store (docs/drivers.md).
//
// Layout: <dir>/topic-<topic_id>/<consumer_id>.off, 12 bytes each: the offset as 8 bytes
// big-endian, then the CRC-32 (IEEE) of those 8 bytes, so a torn or damaged file is loud.
// A save writes a unique temporary file in the same directory, fsyncs it, renames it over the
// key's file and fsyncs the directory: every save and delete is one atomic rename or unlink,
// so handles in several processes need no lock. The standard library only (offline builds).
//
// --in-place gives the realistic defect: os.WriteFile on the key's file (truncate, write, no
// fsync), as a first version of such a store often does.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

type store struct {
	dir     string
	inPlace bool
}

type failure struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Path    string `json:"path,omitempty"`
	Errno   string `json:"errno,omitempty"`
}

func ioFailure(err error) *failure {
	f := &failure{Kind: "io", Message: err.Error()}
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		f.Path = pathErr.Path
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		f.Errno = errnoName(errno)
	}
	return f
}

func errnoName(e syscall.Errno) string {
	names := map[syscall.Errno]string{
		syscall.EIO: "EIO", syscall.ENOSPC: "ENOSPC", syscall.EACCES: "EACCES", syscall.EPERM: "EPERM",
		syscall.ENOENT: "ENOENT", syscall.EEXIST: "EEXIST", syscall.EROFS: "EROFS", syscall.EDQUOT: "EDQUOT",
		syscall.EBADF: "EBADF", syscall.EINVAL: "EINVAL", syscall.EINTR: "EINTR", syscall.EAGAIN: "EAGAIN",
	}
	return names[e]
}

func (s *store) file(topic uint32, consumer uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("topic-%d", topic), fmt.Sprintf("%d.off", consumer))
}

func encode(offset uint64) []byte {
	data := make([]byte, 12)
	binary.BigEndian.PutUint64(data, offset)
	binary.BigEndian.PutUint32(data[8:], crc32.ChecksumIEEE(data[:8]))
	return data
}

func decode(path string, data []byte) (uint64, *failure) {
	if len(data) != 12 || binary.BigEndian.Uint32(data[8:]) != crc32.ChecksumIEEE(data[:8]) {
		return 0, &failure{Kind: "corrupt", Message: fmt.Sprintf("corrupt offset file %s (%d bytes, checksum does not match)", path, len(data)), Path: path}
	}
	return binary.BigEndian.Uint64(data), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *store) load(topic uint32, consumer uint64) (*uint64, *failure) {
	path := s.file(topic, consumer)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, ioFailure(err)
	}
	offset, f := decode(path, data)
	if f != nil {
		return nil, f
	}
	return &offset, nil
}

// writeTemp writes offset to a new, unique file beside the key's, synced; its name.
// topicDir makes the key's topic directory when it is new, and fsyncs the store's directory
// then: a power cut must not undo the directory that holds an acknowledged offset.
func (s *store) topicDir(topic uint32, consumer uint64) (string, *failure) {
	dir := filepath.Dir(s.file(topic, consumer))
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return dir, nil
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		return "", ioFailure(err)
	}
	return dir, nil
}

func (s *store) writeTemp(topic uint32, consumer uint64, offset uint64) (string, *failure) {
	dir, f := s.topicDir(topic, consumer)
	if f != nil {
		return "", f
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", ioFailure(err)
	}
	name := tmp.Name()
	if _, err = tmp.Write(encode(offset)); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", ioFailure(err)
	}
	return name, nil
}

func (s *store) save(topic uint32, consumer uint64, offset uint64) *failure {
	path := s.file(topic, consumer)
	if s.inPlace {
		if _, f := s.topicDir(topic, consumer); f != nil {
			return f
		}
		if err := os.WriteFile(path, encode(offset), 0o644); err != nil {
			return ioFailure(err)
		}
		return nil
	}
	tmp, f := s.writeTemp(topic, consumer, offset)
	if f != nil {
		return f
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return ioFailure(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return ioFailure(err)
	}
	return nil
}

func (s *store) delete(topic uint32, consumer uint64) *failure {
	path := s.file(topic, consumer)
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return ioFailure(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return ioFailure(err)
	}
	return nil
}

type entry struct {
	topic    uint32
	consumer uint64
	offset   uint64
}

func (s *store) listAll() ([]entry, *failure) {
	var found []entry
	topics, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, ioFailure(err)
	}
	for _, t := range topics {
		rest := strings.TrimPrefix(t.Name(), "topic-")
		topic, err := strconv.ParseUint(rest, 10, 32)
		if !t.IsDir() || rest == t.Name() || err != nil || strconv.FormatUint(topic, 10) != rest {
			continue
		}
		keys, err := os.ReadDir(filepath.Join(s.dir, t.Name()))
		if err != nil {
			return nil, ioFailure(err)
		}
		for _, k := range keys {
			digits := strings.TrimSuffix(k.Name(), ".off")
			consumer, err := strconv.ParseUint(digits, 10, 64)
			if digits == k.Name() || err != nil || strconv.FormatUint(consumer, 10) != digits {
				continue // temporary files and anything else
			}
			offset, f := s.load(uint32(topic), consumer)
			if f != nil {
				return nil, f
			}
			if offset != nil {
				found = append(found, entry{uint32(topic), consumer, *offset})
			}
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].topic != found[j].topic {
			return found[i].topic < found[j].topic
		}
		return found[i].consumer < found[j].consumer
	})
	return found, nil
}

// number parses a protocol number: a decimal string that fits in bits.
func number(request map[string]json.RawMessage, name string, bits int) (uint64, *failure) {
	var text string
	if err := json.Unmarshal(request[name], &text); err != nil {
		return 0, &failure{Kind: "invalid_argument", Message: name + " must be a decimal string"}
	}
	for _, c := range text {
		if c < '0' || c > '9' {
			return 0, &failure{Kind: "invalid_argument", Message: fmt.Sprintf("%s must be a non-negative integer, got %q", name, text)}
		}
	}
	value, err := strconv.ParseUint(text, 10, bits)
	if err != nil {
		return 0, &failure{Kind: "invalid_argument", Message: fmt.Sprintf("%s must fit in %d bits, got %s", name, bits, text)}
	}
	return value, nil
}

func key(request map[string]json.RawMessage) (uint32, uint64, *failure) {
	topic, f := number(request, "topic_id", 32)
	if f != nil {
		return 0, 0, f
	}
	consumer, f := number(request, "consumer_id", 64)
	return uint32(topic), consumer, f
}

func main() {
	s := &store{}
	for _, arg := range os.Args[1:] {
		if arg == "--in-place" {
			s.inPlace = true
		} else {
			fmt.Fprintf(os.Stderr, "go-store: unknown argument %q\n", arg)
			os.Exit(2)
		}
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var request map[string]json.RawMessage
		if err := json.Unmarshal(in.Bytes(), &request); err != nil {
			fmt.Fprintf(os.Stderr, "go-store: a request that is not JSON: %v\n", err)
			os.Exit(2)
		}
		var op string
		json.Unmarshal(request["op"], &op)
		var ok interface{}
		var f *failure
		closing := false
		switch op {
		case "open":
			var path string
			json.Unmarshal(request["path"], &path)
			s.dir = path
			if err := os.MkdirAll(path, 0o755); err != nil {
				f = ioFailure(err)
			} else {
				ok = map[string]interface{}{"protocol": 1, "capabilities": map[string]bool{"persistent": true, "shared": true, "durable": true}}
			}
		case "load":
			topic, consumer, kf := key(request)
			if f = kf; f == nil {
				var found *uint64
				if found, f = s.load(topic, consumer); f == nil && found != nil {
					ok = strconv.FormatUint(*found, 10)
				}
			}
		case "save":
			topic, consumer, kf := key(request)
			if f = kf; f == nil {
				var offset uint64
				if offset, f = number(request, "offset", 64); f == nil {
					f = s.save(topic, consumer, offset)
				}
			}
		case "delete":
			topic, consumer, kf := key(request)
			if f = kf; f == nil {
				f = s.delete(topic, consumer)
			}
		case "list_all":
			var listed []entry
			if listed, f = s.listAll(); f == nil {
				rows := make([][3]string, 0, len(listed))
				for _, e := range listed {
					rows = append(rows, [3]string{strconv.FormatUint(uint64(e.topic), 10), strconv.FormatUint(e.consumer, 10), strconv.FormatUint(e.offset, 10)})
				}
				ok = rows
			}
		case "close":
			closing = true
		default:
			f = &failure{Kind: "invalid_argument", Message: fmt.Sprintf("unknown op %q", op)}
		}
		reply := map[string]interface{}{"id": request["id"]}
		if f != nil {
			reply["error"] = f
		} else {
			reply["ok"] = ok
		}
		line, _ := json.Marshal(reply)
		out.Write(line)
		out.WriteByte('\n')
		out.Flush()
		if closing {
			return
		}
	}
}
