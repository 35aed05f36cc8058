// Command benthos_bridge is benchmarks/bridge.py's Benthos peer: the MIT Benthos engine
// (github.com/redpanda-data/benthos/v4) doing our bridge's job for Gameball deliveries.
//
//	http_server input (sync response: the answer waits for the output's ack)
//	  → gameball_verify processor (X-GB-Signature on the exact bytes; bad → 401, not written)
//	  → franz_sync output (franz-go, acks=all, idempotent, one ProduceSync per message)
//
// Usage: benthos_bridge -addr 127.0.0.1:PORT -brokers host:port -topic T -secret S
// GET /readyz answers 200 once the output reached Kafka; POST /webhooks/gameball is the input.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"

	"loyaltyconnector/benchmarks/peers/benthos_bridge/gameball"
)

// Metadata the verify processor sets and the output reads.
const (
	metaOK        = "gb_signature_ok"
	metaRequestID = "gb_request_id"
	metaStatus    = "http_status"
)

// The stream: a refused delivery gets its 401 body stored as the sync response and is then
// deleted, so it never reaches the output; an accepted one stores nothing and the input
// answers 200 (empty body) when the output acked it.
const streamYAML = `
input:
  http_server:
    path: /webhooks/gameball
    allowed_verbs: [POST]
    timeout: 10s
    sync_response:
      status: '${! @http_status.or("200") }'
      headers:
        Content-Type: application/json
pipeline:
  processors:
    - gameball_verify:
        secret_key: ${GB_SECRET}
    - switch:
        - check: '@gb_signature_ok != "true"'
          processors:
            - mapping: |
                meta http_status = "401"
                root = {"error": "verification failed: " + @gb_error}
            - sync_response: {}
            - mapping: root = deleted()
output:
  franz_sync:
    seed_brokers: ${KAFKA_BROKERS}
    topic: ${KAFKA_TOPIC}
    max_in_flight: 1024
logger:
  level: WARN
`

func verifySpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Summary("Checks X-GB-Signature on the exact body bytes; sets gb_signature_ok.").
		Field(service.NewStringField("secret_key").Secret())
}

type verifyProcessor struct {
	verifier *gameball.Verifier
	ids      *gameball.RequestIDs
}

func (p *verifyProcessor) Process(_ context.Context, msg *service.Message) (service.MessageBatch, error) {
	body, err := msg.AsBytes()
	if err != nil {
		return nil, err
	}
	signature, _ := msg.MetaGet("X-Gb-Signature")
	if err := p.verifier.Verify(body, signature); err != nil {
		msg.MetaSetMut(metaOK, "false")
		msg.MetaSetMut("gb_error", err.Error())
		return service.MessageBatch{msg}, nil
	}
	msg.MetaSetMut(metaOK, "true")
	msg.MetaSetMut(metaRequestID, p.ids.Next())
	return service.MessageBatch{msg}, nil
}

func (p *verifyProcessor) Close(context.Context) error { return nil }

func outputSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Summary("Writes each message as our bridge's raw record with franz-go: acks=all, " +
			"idempotent, and acks the message only when Kafka acked the record.").
		Field(service.NewStringField("seed_brokers")).
		Field(service.NewStringField("topic")).
		Field(service.NewIntField("max_in_flight").Default(1024))
}

// connected: the output's client reached Kafka (what /readyz reports).
var connected atomic.Bool

type franzOutput struct {
	brokers, topic string
	client         *kgo.Client
}

func (o *franzOutput) Connect(ctx context.Context) error {
	if o.client != nil {
		return nil
	}
	client, err := kgo.NewClient(gameball.ClientOptions(o.brokers, "benthos-bridge-peer")...)
	if err != nil {
		return err
	}
	if err := client.Ping(ctx); err != nil {
		client.Close()
		return err
	}
	o.client = client
	connected.Store(true)
	return nil
}

// WriteBatch produces every message of the batch (one per HTTP request here: the input makes a
// transaction per request and no batching policy is set) and returns only after Kafka's acks.
func (o *franzOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	records := make([]*kgo.Record, 0, len(batch))
	for _, msg := range batch {
		body, err := msg.AsBytes()
		if err != nil {
			return err
		}
		id, _ := msg.MetaGet(metaRequestID)
		contentType, _ := msg.MetaGet("Content-Type")
		signature, _ := msg.MetaGet("X-Gb-Signature")
		version, _ := msg.MetaGet("X-Gb-Webhook-Version")
		records = append(records, gameball.Record(o.topic, id, body, contentType, signature, version))
	}
	return o.client.ProduceSync(ctx, records...).FirstErr()
}

func (o *franzOutput) Close(context.Context) error {
	if o.client != nil {
		o.client.Close()
	}
	return nil
}

func register() {
	service.MustRegisterProcessor("gameball_verify", verifySpec(),
		func(conf *service.ParsedConfig, _ *service.Resources) (service.Processor, error) {
			secret, err := conf.FieldString("secret_key")
			if err != nil {
				return nil, err
			}
			if secret == "" {
				return nil, errors.New("gameball_verify: secret_key is empty")
			}
			return &verifyProcessor{gameball.NewVerifier(secret), gameball.NewRequestIDs()}, nil
		})
	service.MustRegisterBatchOutput("franz_sync", outputSpec(),
		func(conf *service.ParsedConfig, _ *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			var out franzOutput
			var err error
			if out.brokers, err = conf.FieldString("seed_brokers"); err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			if out.topic, err = conf.FieldString("topic"); err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			inFlight, err := conf.FieldInt("max_in_flight")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			return &out, service.BatchPolicy{}, inFlight, nil
		})
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated")
	topic := flag.String("topic", "loyalty.webhooks.raw", "raw topic")
	secret := flag.String("secret", "", "Gameball SecretKey (or GB_SECRET)")
	flag.Parse()
	if *secret == "" {
		*secret = os.Getenv("GB_SECRET")
	}
	if *secret == "" {
		log.Fatal("benthos_bridge: give the Gameball secret with -secret or GB_SECRET")
	}
	register()

	vars := map[string]string{"GB_SECRET": *secret, "KAFKA_BROKERS": *brokers, "KAFKA_TOPIC": *topic}
	builder := service.NewStreamBuilder()
	builder.SetEnvVarLookupFunc(func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
	mux := http.NewServeMux()
	builder.SetHTTPMux(mux)
	if err := builder.SetYAML(streamYAML); err != nil {
		log.Fatalf("benthos_bridge: config: %v", err)
	}
	stream, err := builder.Build()
	if err != nil {
		log.Fatalf("benthos_bridge: build: %v", err)
	}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !connected.Load() {
			http.Error(w, "Kafka not connected yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("benthos_bridge: listen: %v", err)
		}
	}()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stream.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "benthos_bridge:", err)
		}
	case <-ctx.Done():
		_ = stream.StopWithin(10 * time.Second)
	}
	shutdown, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = server.Shutdown(shutdown)
}
