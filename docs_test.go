package dlock_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The documents the repository's own section references may point into.
var ownDocs = []string{"SEMANTICS.md", "PROTOCOL.md"}

// repoFiles returns the text files of the repository (the test runs in its
// root), skipping hidden directories (.git, .ci's caches) and build output.
func repoFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "build") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d files: is the test running in the repository root?", len(files))
	}
	return files
}

// sections returns the section numbers a Markdown document defines with its
// headings ("## 4. Messages" → "4", "### 4.6 Abandoning…" → "4.6") and the
// anchors GitHub derives from all its headings.
func sections(t *testing.T, path string) (nums, anchors map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	nums, anchors = map[string]bool{}, map[string]bool{}
	num := regexp.MustCompile(`^#+ (\d+(?:\.\d+)*)\.? `)
	inCode := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		if m := num.FindStringSubmatch(line); m != nil {
			nums[m[1]] = true
		}
		anchors[slug(strings.TrimLeft(line, "# "))] = true
	}
	return nums, anchors
}

// slug is GitHub's anchor for a heading: lower case, punctuation dropped,
// spaces turned into hyphens.
func slug(h string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			sb.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// TestDocsStandAlone: no file cites the specification documents the
// project was built from (they are not in the repository), and every "§"
// reference points at an existing section of SEMANTICS.md or PROTOCOL.md.
// A bare "§" is allowed only inside those two documents, where it means
// their own sections.
func TestDocsStandAlone(t *testing.T) {
	defined := map[string]map[string]bool{}
	for _, d := range ownDocs {
		defined[d], _ = sections(t, d)
	}
	outside := regexp.MustCompile(`\b(BEHAVIOR\.md|ABI\.md|STYLE\.md)`)
	// A reference: "SEMANTICS.md §6.3", "PROTOCOL.md §4.4, §6", or within a
	// document "§5.1–§5.3" (the document named, if any, is the target).
	ref := regexp.MustCompile(`(?:(SEMANTICS\.md|PROTOCOL\.md)[\])]?(?:\([^)]*\))? )?§(\d+(?:\.\d+)*)((?:(?:, | and |–)§\d+(?:\.\d+)*)*)`)
	more := regexp.MustCompile(`§(\d+(?:\.\d+)*)`)
	checked := 0
	for _, path := range repoFiles(t) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 || path == "docs_test.go" {
			continue // binary, or this file's own examples
		}
		text := string(b)
		for _, m := range outside.FindAllStringIndex(text, -1) {
			t.Errorf("%s:%d cites %s, which is not in the repository: write the fact here or in SEMANTICS.md",
				path, lineOf(text, m[0]), text[m[0]:m[1]])
		}
		self := ""
		for _, d := range ownDocs {
			if filepath.ToSlash(path) == d {
				self = d
			}
		}
		for _, m := range ref.FindAllStringSubmatchIndex(text, -1) {
			target := self
			if m[2] >= 0 {
				target = text[m[2]:m[3]]
			}
			line := lineOf(text, m[0])
			if target == "" {
				t.Errorf("%s:%d: %q names no document: write \"SEMANTICS.md §…\" or \"PROTOCOL.md §…\"",
					path, line, text[m[0]:m[1]])
				continue
			}
			nums := []string{text[m[4]:m[5]]}
			for _, x := range more.FindAllStringSubmatch(text[m[6]:m[7]], -1) {
				nums = append(nums, x[1])
			}
			for _, n := range nums {
				checked++
				if !defined[target][n] {
					t.Errorf("%s:%d: %s has no section %s", path, line, target, n)
				}
			}
		}
		// Any other "§" refers to a document that is not here.
		covered := ref.FindAllStringIndex(text, -1)
		for i := strings.Index(text, "§"); i >= 0; {
			in := false
			for _, c := range covered {
				in = in || (c[0] <= i && i < c[1])
			}
			if !in {
				t.Errorf("%s:%d: a '§' that is not a reference to SEMANTICS.md or PROTOCOL.md", path, lineOf(text, i))
			}
			j := strings.Index(text[i+1:], "§")
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d section references; the pattern no longer matches the documents", checked)
	}
}

// TestDocsLinks: every relative link of the top-level documents points at
// a file of the repository and, with a #fragment, at one of its headings.
func TestDocsLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, doc := range append([]string{"README.md"}, ownDocs...) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := stripCode(string(b))
		for _, m := range link.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file, frag, _ := strings.Cut(target, "#")
			if file == "" {
				file = doc
			}
			file = filepath.Join(filepath.Dir(doc), filepath.FromSlash(file))
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s:%d: link %q: %v", doc, lineOf(text, m[0]), target, err)
				continue
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(file, ".md") {
				t.Errorf("%s:%d: link %q: fragment into a file that is not Markdown", doc, lineOf(text, m[0]), target)
				continue
			}
			if _, anchors := sections(t, file); !anchors[frag] {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", doc, lineOf(text, m[0]), target, file, frag)
			}
		}
	}
	if checked < 5 {
		t.Errorf("checked only %d links; expected the documents to link to each other", checked)
	}
}

// stripCode blanks fenced code blocks and inline code (keeping the line
// structure), so that code is not taken for links.
func stripCode(s string) string {
	lines := strings.Split(s, "\n")
	inCode := false
	inline := regexp.MustCompile("`[^`]*`")
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
			lines[i] = ""
			continue
		}
		if inCode {
			lines[i] = ""
			continue
		}
		lines[i] = inline.ReplaceAllString(l, "``")
	}
	return strings.Join(lines, "\n")
}

func lineOf(s string, off int) int { return strings.Count(s[:off], "\n") + 1 }
