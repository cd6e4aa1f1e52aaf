package flagenv

import (
	"errors"
	"flag"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantN   int
		wantErr bool
	}{
		{name: "default", want: "127.0.0.1:3001", wantN: 4},
		{name: "env", env: map[string]string{"SLUICE_LISTEN": "0.0.0.0:9"}, want: "0.0.0.0:9", wantN: 4},
		{name: "flag wins over env", args: []string{"-listen", "a:1"}, env: map[string]string{"SLUICE_LISTEN": "b:2"}, want: "a:1", wantN: 4},
		{name: "dashed name", env: map[string]string{"SLUICE_MAX_CONNS": "7"}, want: "127.0.0.1:3001", wantN: 7},
		{name: "bad env value", env: map[string]string{"SLUICE_MAX_CONNS": "x"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			listen := fs.String("listen", "127.0.0.1:3001", "")
			n := fs.Int("max-conns", 4, "")
			err := Parse(fs, tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want it to match ErrUsage", err)
				}
				return
			}
			if *listen != tc.want || *n != tc.wantN {
				t.Fatalf("listen=%q n=%d, want %q %d", *listen, *n, tc.want, tc.wantN)
			}
		})
	}
}
