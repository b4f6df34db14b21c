package webhook_test

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// parseNestedQuery decodes a form body the way Rack's
// Rack::Utils.parse_nested_query (Rack 3) does, which is what Rails hands
// an app as params: split at '&', split each pair at the first '=',
// unescape both halves, then read brackets in the unescaped name. a[b]
// nests a map, a[0] a map with the key "0" (as Rails has it), a[] appends
// to an array; the last value of a repeated key wins. PHP's parse_str
// reads the same bodies the same way, but for integer keys and the
// mangling of '.' and ' ' in top-level names.
//
// It is a port of QueryParser#_normalize_params, kept close to the Ruby so
// that it can be checked line by line; it is the independent decoder the
// form tests hold AppendForm to.
func parseNestedQuery(qs string) (map[string]any, error) {
	params := map[string]any{}
	for _, p := range strings.Split(qs, "&") {
		if p == "" {
			continue
		}
		rawKey, rawValue, hasValue := strings.Cut(p, "=")
		k, err := url.QueryUnescape(rawKey)
		if err != nil {
			return nil, err
		}
		var v any // nil without '=', as in Rack
		if hasValue {
			if v, err = url.QueryUnescape(rawValue); err != nil {
				return nil, err
			}
		}
		if _, err := normalizeParams(params, k, v, 0); err != nil {
			return nil, err
		}
	}
	return params, nil
}

var errParamsTooDeep = errors.New("params too deep")

const rackParamDepthLimit = 32

func normalizeParams(params map[string]any, name string, v any, depth int) (any, error) {
	if depth >= rackParamDepthLimit {
		return nil, errParamsTooDeep
	}
	var k, after string
	switch {
	case depth == 0:
		// Start of parsing: don't treat [] or [ at the start specially.
		if i := indexFrom1(name, '['); i >= 0 {
			k, after = name[:i], name[i:]
		} else {
			k = name
		}
	case strings.HasPrefix(name, "[]"):
		k, after = "[]", name[2:]
	case strings.HasPrefix(name, "[") && strings.Contains(name[1:], "]"):
		j := 1 + strings.Index(name[1:], "]")
		k, after = name[1:j], name[j+1:]
	default:
		k = name
	}
	if k == "" {
		return nil, nil
	}
	switch {
	case after == "":
		if k == "[]" && depth != 0 {
			return []any{v}, nil
		}
		params[k] = v
	case after == "[":
		params[name] = v
	case after == "[]":
		arr, err := arrayParam(params, k)
		if err != nil {
			return nil, err
		}
		params[k] = append(arr, v)
	case strings.HasPrefix(after, "[]"):
		childKey := after[2:]
		if c := after[2:]; strings.HasPrefix(c, "[") && strings.HasSuffix(c, "]") && len(c) > 2 && !strings.ContainsAny(c[1:len(c)-1], "[]") {
			childKey = c[1 : len(c)-1]
		}
		arr, err := arrayParam(params, k)
		if err != nil {
			return nil, err
		}
		if last, ok := lastMap(arr); ok && !hasKey(last, childKey) {
			if _, err := normalizeParams(last, childKey, v, depth+1); err != nil {
				return nil, err
			}
		} else {
			child, err := normalizeParams(map[string]any{}, childKey, v, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, child)
		}
		params[k] = arr
	default:
		existing, ok := params[k]
		if !ok {
			existing = map[string]any{}
		}
		m, ok := existing.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("expected Hash (got %T) for param %q", existing, k)
		}
		child, err := normalizeParams(m, after, v, depth+1)
		if err != nil {
			return nil, err
		}
		params[k] = child
	}
	return params, nil
}

// indexFrom1 is Ruby's name.index(c, 1): the first c at or after index 1.
func indexFrom1(name string, c byte) int {
	if len(name) < 2 {
		return -1
	}
	if i := strings.IndexByte(name[1:], c); i >= 0 {
		return i + 1
	}
	return -1
}

func arrayParam(params map[string]any, k string) ([]any, error) {
	existing, ok := params[k]
	if !ok {
		return nil, nil
	}
	arr, ok := existing.([]any)
	if !ok {
		return nil, fmt.Errorf("expected Array (got %T) for param %q", existing, k)
	}
	return arr, nil
}

func lastMap(arr []any) (map[string]any, bool) {
	if len(arr) == 0 {
		return nil, false
	}
	m, ok := arr[len(arr)-1].(map[string]any)
	return m, ok
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

// TestParseNestedQuery pins the test decoder to what Rack answers for the
// same input (from Rack's own spec/spec_utils.rb).
func TestParseNestedQuery(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]any
	}{
		{"foo", map[string]any{"foo": nil}},
		{"foo=", map[string]any{"foo": ""}},
		{"foo=bar", map[string]any{"foo": "bar"}},
		{"foo=bar&foo=quux", map[string]any{"foo": "quux"}},
		{"foo=1&bar=2", map[string]any{"foo": "1", "bar": "2"}},
		{"my+weird+field=q1%212%22%27w%245%267%2Fz8%29%3F", map[string]any{"my weird field": `q1!2"'w$5&7/z8)?`}},
		{"foo%3Dbaz=bar", map[string]any{"foo=baz": "bar"}},
		{"=", map[string]any{}},
		{"=value", map[string]any{}},
		{"foo[]", map[string]any{"foo": []any{nil}}},
		{"foo[]=bar&foo[]=baz", map[string]any{"foo": []any{"bar", "baz"}}},
		{"x[y][z]=1", map[string]any{"x": map[string]any{"y": map[string]any{"z": "1"}}}},
		{"x[y][z]=1&x[y][z]=2", map[string]any{"x": map[string]any{"y": map[string]any{"z": "2"}}}},
		{"x[y][][z]=1&x[y][][w]=2", map[string]any{"x": map[string]any{"y": []any{map[string]any{"z": "1", "w": "2"}}}}},
		{"x[y][][z]=1&x[y][][z]=2", map[string]any{"x": map[string]any{"y": []any{map[string]any{"z": "1"}, map[string]any{"z": "2"}}}}},
		{"x[0]=a&x[1]=b", map[string]any{"x": map[string]any{"0": "a", "1": "b"}}},
		{"[foo]=bar", map[string]any{"[foo]": "bar"}},
		{"x%5By%5D=1", map[string]any{"x": map[string]any{"y": "1"}}}, // Rack unescapes before it reads brackets
	}
	for _, tt := range tests {
		got, err := parseNestedQuery(tt.in)
		if err != nil {
			t.Errorf("parseNestedQuery(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseNestedQuery(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
	for _, in := range []string{"x[y]=1&x[y][z]=2", "x[y][]=1&x[y][z]=2", "x[]=1&x[y]=2"} {
		if _, err := parseNestedQuery(in); err == nil {
			t.Errorf("parseNestedQuery(%q): no error for conflicting types", in)
		}
	}
	if _, err := parseNestedQuery("a" + strings.Repeat("[a]", rackParamDepthLimit) + "=1"); !errors.Is(err, errParamsTooDeep) {
		t.Errorf("33 segments: err = %v, want too deep", err)
	}
	if _, err := parseNestedQuery("a" + strings.Repeat("[a]", rackParamDepthLimit-1) + "=1"); err != nil {
		t.Errorf("32 segments: %v", err)
	}
}
