package metrics

import (
	"encoding/json"
	"strings"
)

// Fields flattens a stats struct (with json tags, int64 fields, possibly
// nested) into name -> value for Snapshot, nested names joined with "_".
func Fields(v any) map[string]int64 {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil
	}
	out := map[string]int64{}
	flatten("", m, out)
	return out
}

func flatten(prefix string, m map[string]any, out map[string]int64) {
	for k, v := range m {
		name := strings.TrimPrefix(prefix+"_"+k, "_")
		switch x := v.(type) {
		case float64:
			out[name] = int64(x)
		case map[string]any:
			flatten(name, x, out)
		}
	}
}
