package herald_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile loads docker-compose.yml the way Docker Compose does and
// checks the deployment it describes: NATS with JetStream on a volume, one
// API process, two dispatchers, all pointed at that NATS.
func TestComposeFile(t *testing.T) {
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  ".",
		ConfigFiles: []types.ConfigFile{{Filename: "docker-compose.yml"}},
		Environment: types.Mapping{"HERALD_ADMIN_TOKEN": "compose-test-token", "HERALD_ENCRYPTION_KEY": "compose-test-key"},
	}, func(o *loader.Options) { o.SetProjectName("herald", true) })
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	if names := p.ServiceNames(); !sameSet(names, []string{"nats", "herald-api", "herald-dispatch"}) {
		t.Fatalf("services %v, want nats, herald-api, herald-dispatch", names)
	}

	t.Run("nats runs JetStream on a volume", func(t *testing.T) {
		s := p.Services["nats"]
		if s.Image != "nats:2.12-alpine" {
			t.Errorf("image %q", s.Image)
		}
		if !slices.Contains(s.Command, "--jetstream") {
			t.Errorf("command %v does not enable JetStream", s.Command)
		}
		i := slices.Index(s.Command, "--store_dir")
		if i < 0 || i+1 >= len(s.Command) {
			t.Fatalf("command %v names no store dir", s.Command)
		}
		if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Type == types.VolumeTypeVolume && v.Source == "nats-data" && v.Target == s.Command[i+1]
		}) {
			t.Errorf("the store dir %s is not on the nats-data volume: %+v", s.Command[i+1], s.Volumes)
		}
		if _, ok := p.Volumes["nats-data"]; !ok {
			t.Errorf("volume nats-data is not declared")
		}
	})

	t.Run("one API process against nats", func(t *testing.T) {
		s := p.Services["herald-api"]
		if s.Build == nil || s.Image != "herald:latest" {
			t.Errorf("herald-api builds %v as %q, want the repo built as herald:latest", s.Build, s.Image)
		}
		if !slices.Equal(s.Command, types.ShellCommand{"serve", "--api-only"}) {
			t.Errorf("command %v", s.Command)
		}
		wantEnv(t, s, "HERALD_NATS_URL", "nats://nats:4222")
		wantEnv(t, s, "HERALD_HTTP_ADDR", "0.0.0.0:8080")
		wantEnv(t, s, "HERALD_ADMIN_TOKEN", "compose-test-token")
		wantEnv(t, s, "HERALD_ENCRYPTION_KEY", "compose-test-key")
		if s.Deploy != nil && s.Deploy.Replicas != nil && *s.Deploy.Replicas != 1 {
			t.Errorf("replicas %d, want 1", *s.Deploy.Replicas)
		}
		if len(s.Ports) != 1 || s.Ports[0].Target != 8080 {
			t.Errorf("ports %+v, want 8080 published", s.Ports)
		}
		if _, ok := s.DependsOn["nats"]; !ok {
			t.Errorf("herald-api does not depend on nats")
		}
	})

	t.Run("two dispatchers against nats", func(t *testing.T) {
		s := p.Services["herald-dispatch"]
		if s.Build == nil || s.Image != "herald:latest" {
			t.Errorf("herald-dispatch builds %v as %q, want the repo built as herald:latest", s.Build, s.Image)
		}
		if !slices.Equal(s.Command, types.ShellCommand{"dispatch"}) {
			t.Errorf("command %v", s.Command)
		}
		wantEnv(t, s, "HERALD_NATS_URL", "nats://nats:4222")
		wantEnv(t, s, "HERALD_ALLOW_PRIVATE_TARGETS", "false")
		// Every dispatcher opens the credentials the API sealed.
		wantEnv(t, s, "HERALD_ENCRYPTION_KEY", "compose-test-key")
		if s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2 {
			t.Errorf("deploy %+v, want 2 replicas", s.Deploy)
		}
		if len(s.Ports) != 0 {
			t.Errorf("dispatchers publish ports %+v; they need none", s.Ports)
		}
	})

	for _, missing := range []string{"HERALD_ADMIN_TOKEN", "HERALD_ENCRYPTION_KEY"} {
		t.Run(missing+" is required", func(t *testing.T) {
			env := types.Mapping{"HERALD_ADMIN_TOKEN": "t", "HERALD_ENCRYPTION_KEY": "k"}
			delete(env, missing)
			_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
				WorkingDir:  ".",
				ConfigFiles: []types.ConfigFile{{Filename: "docker-compose.yml"}},
				Environment: env,
			}, func(o *loader.Options) { o.SetProjectName("herald", true) })
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("loading without %s: %v, want an error naming it", missing, err)
			}
		})
	}
}

func wantEnv(t *testing.T, s types.ServiceConfig, key, want string) {
	t.Helper()
	v, ok := s.Environment[key]
	if !ok || v == nil || *v != want {
		t.Errorf("%s: %s = %v, want %q", s.Name, key, v, want)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
