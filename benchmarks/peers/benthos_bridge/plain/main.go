// Command plain is benchmarks/bridge.py's upper reference: Go's net/http and franz-go, no engine.
// POST /webhooks/gameball: read the body (capped), check X-GB-Signature (401 if bad), write our
// bridge's raw record with ProduceSync (acks=all, idempotent) and answer 200 after the ack.
//
// Usage: plain -addr 127.0.0.1:PORT -brokers host:port -topic T -secret S
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"loyaltyconnector/benchmarks/peers/benthos_bridge/gameball"
)

const maxBody = 1 << 20 // CONNECTOR_MAX_BODY_BYTES' default

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated")
	topic := flag.String("topic", "loyalty.webhooks.raw", "raw topic")
	secret := flag.String("secret", "", "Gameball SecretKey (or GB_SECRET)")
	flag.Parse()
	if *secret == "" {
		*secret = os.Getenv("GB_SECRET")
	}
	if *secret == "" {
		log.Fatal("plain: give the Gameball secret with -secret or GB_SECRET")
	}
	client, err := kgo.NewClient(gameball.ClientOptions(*brokers, "plain-go-bridge-peer")...)
	if err != nil {
		log.Fatalf("plain: kafka client: %v", err)
	}
	defer client.Close()
	verifier, ids := gameball.NewVerifier(*secret), gameball.NewRequestIDs()
	var connected atomic.Bool
	go func() {
		for client.Ping(context.Background()) != nil {
			time.Sleep(200 * time.Millisecond)
		}
		connected.Store(true)
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !connected.Load() {
			http.Error(w, "Kafka not connected yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("POST /webhooks/gameball", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, `{"error":"body too large"}`)
			return
		}
		signature := r.Header.Get("X-GB-Signature")
		if err := verifier.Verify(body, signature); err != nil {
			writeJSON(w, http.StatusUnauthorized, fmt.Sprintf(`{"error":%q}`, "verification failed: "+err.Error()))
			return
		}
		id := ids.Next()
		record := gameball.Record(*topic, id, body, r.Header.Get("Content-Type"), signature,
			r.Header.Get("X-GB-Webhook-Version"))
		if err := client.ProduceSync(r.Context(), record).FirstErr(); err != nil {
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, `{"error":"Kafka is unavailable; retry later"}`)
			return
		}
		writeJSON(w, http.StatusOK, fmt.Sprintf(`{"accepted":true,"request_id":%q}`, id))
	})
	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	go func() {
		<-ctx.Done()
		shutdown, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = server.Shutdown(shutdown)
	}()
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("plain: listen: %v", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
