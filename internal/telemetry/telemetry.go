// Package telemetry wires moat to OpenTelemetry tracing and instruments the
// parts that talk to the outside (the session store, the IdP) with traces
// and Prometheus metrics. Span attributes carry names and sizes, never a
// token, a cookie or a session ID.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/moat-bff/moat/internal/metrics"
	"github.com/moat-bff/moat/internal/session"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is a tracer provider and the W3C propagator moat uses.
type Tracing struct {
	Provider   trace.TracerProvider
	Propagator propagation.TextMapPropagator
	shutdown   func(context.Context) error
}

// off reports whether t is the no-op provider (tracing not configured).
// Then Handler and Transport add nothing: otelhttp would still build
// attribute sets, wrap the ResponseWriter and copy the request for every
// call, only to hand them to a tracer that drops them. A traceparent the
// browser sent still reaches the upstream, as a request header the proxy
// forwards.
func (t *Tracing) off() bool {
	_, noopProvider := t.Provider.(noop.TracerProvider)
	return noopProvider
}

// Enabled reports whether the standard OTEL_* variables ask for traces:
// an OTLP endpoint is set, or OTEL_TRACES_EXPORTER=otlp. OTEL_SDK_DISABLED
// and OTEL_TRACES_EXPORTER=none turn tracing off.
func Enabled(getenv func(string) string) bool {
	if getenv("OTEL_SDK_DISABLED") == "true" || getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return getenv("OTEL_TRACES_EXPORTER") == "otlp" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup returns tracing configured from the OTEL_* environment (OTLP over
// HTTP; endpoint, headers, sampler and service name as the spec defines),
// or a no-op when Enabled is false.
func Setup(ctx context.Context, version string) (*Tracing, error) {
	t := &Tracing{Provider: noop.NewTracerProvider(), Propagator: propagation.TraceContext{}, shutdown: func(context.Context) error { return nil }}
	if !Enabled(os.Getenv) {
		return t, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	// Defaults first: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.New(ctx, resource.WithAttributes(
		semconv.ServiceName("moat"), semconv.ServiceVersion(version)), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t.Provider, t.shutdown = tp, tp.Shutdown
	return t, nil
}

// NewTracing wraps a given provider (tests use an in-memory exporter).
func NewTracing(tp trace.TracerProvider) *Tracing {
	return &Tracing{Provider: tp, Propagator: propagation.TraceContext{}, shutdown: func(context.Context) error { return nil }}
}

// Shutdown flushes pending spans.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Handler wraps the main handler with a server span per request; without
// tracing it returns h.
func (t *Tracing) Handler(h http.Handler) http.Handler {
	if t.off() {
		return h
	}
	return otelhttp.NewHandler(h, "moat", otelhttp.WithTracerProvider(t.Provider), otelhttp.WithPropagators(t.Propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
}

// Transport wraps an outgoing transport with client spans and W3C
// traceparent propagation (to upstreams and the IdP); without tracing it
// returns rt.
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if t.off() {
		return rt
	}
	return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(t.Provider), otelhttp.WithPropagators(t.Propagator))
}

// IdPTransport wraps the IdP client's transport: a span and a latency
// observation per call, labelled by endpoint.
func IdPTransport(rt http.RoundTripper, m *metrics.Metrics, t *Tracing, endpoint func(*http.Request) string) http.RoundTripper {
	inner := t.Transport(rt)
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := inner.RoundTrip(r)
		m.IdP(endpoint(r), time.Since(start))
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Store wraps s so every operation is timed, counted when it fails, and
// traced as a child span. The key never becomes an attribute.
func Store(s session.Store, m *metrics.Metrics, t *Tracing) session.Store {
	st := &store{s: s, m: m}
	if !t.off() {
		st.tracer = t.Provider.Tracer("moat/session")
	}
	return st
}

type store struct {
	s      session.Store
	m      *metrics.Metrics
	tracer trace.Tracer // nil without tracing
}

var expected = []error{session.ErrNotFound, session.ErrConflict, context.Canceled}

func (s *store) op(ctx context.Context, name string, f func(context.Context) error) {
	if s.tracer == nil {
		start := time.Now()
		err := f(ctx)
		s.m.StoreOp(name, time.Since(start), err, expected...)
		return
	}
	ctx, span := s.tracer.Start(ctx, "session.store."+name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("moat.store.op", name)))
	start := time.Now()
	err := f(ctx)
	s.m.StoreOp(name, time.Since(start), err, expected...)
	if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrConflict) {
		span.SetStatus(codes.Error, "store operation failed")
	}
	span.End()
}

func (s *store) Get(ctx context.Context, key session.Key) (r session.Record, err error) {
	s.op(ctx, "get", func(ctx context.Context) error { r, err = s.s.Get(ctx, key); return err })
	return
}

func (s *store) Set(ctx context.Context, key session.Key, rec session.Record, ttl time.Duration) (v uint64, err error) {
	s.op(ctx, "set", func(ctx context.Context) error { v, err = s.s.Set(ctx, key, rec, ttl); return err })
	return
}

func (s *store) CompareAndSwap(ctx context.Context, key session.Key, old uint64, rec session.Record, ttl time.Duration) (v uint64, err error) {
	s.op(ctx, "cas", func(ctx context.Context) error { v, err = s.s.CompareAndSwap(ctx, key, old, rec, ttl); return err })
	return
}

func (s *store) Take(ctx context.Context, key session.Key) (r session.Record, err error) {
	s.op(ctx, "take", func(ctx context.Context) error { r, err = s.s.Take(ctx, key); return err })
	return
}

func (s *store) Delete(ctx context.Context, key session.Key) (err error) {
	s.op(ctx, "delete", func(ctx context.Context) error { err = s.s.Delete(ctx, key); return err })
	return
}

func (s *store) DeleteBy(ctx context.Context, sub, sid string) (keys []session.Key, err error) {
	s.op(ctx, "delete_by", func(ctx context.Context) error { keys, err = s.s.DeleteBy(ctx, sub, sid); return err })
	return
}

func (s *store) ListBySubject(ctx context.Context, sub string) (m map[session.Key]session.Record, err error) {
	s.op(ctx, "list", func(ctx context.Context) error { m, err = s.s.ListBySubject(ctx, sub); return err })
	return
}

func (s *store) Ping(ctx context.Context) (err error) {
	s.op(ctx, "ping", func(ctx context.Context) error { err = s.s.Ping(ctx); return err })
	return
}

func (s *store) Close() error { return s.s.Close() }
