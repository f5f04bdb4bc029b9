using Lamina.Runtime.Hosting;

namespace Lamina.Runtime;

/// <summary>
/// The entry point of executable functions (runtime <c>provided.al2023</c> with a <c>bootstrap</c> that starts your
/// program): do your initialisation in <c>Main</c>, then hand your handler to <c>RunAsync</c>, which serves
/// invocations from the Runtime API until the environment is torn down.
/// <code>
/// await LambdaRuntime.RunAsync((Order order, ILambdaContext context) =&gt; Process(order),
///     new SourceGeneratorLambdaJsonSerializer&lt;MyJsonContext&gt;());
/// </code>
/// An exception from the handler fails that invocation (AWS's error shape, the type name as <c>errorType</c>);
/// the loop goes on. The task ends when its cancellation token is cancelled, and fails with
/// <see cref="InvalidOperationException"/> if the Runtime API goes away.
/// </summary>
public static class LambdaRuntime
{
    /// <summary>Serves an async handler that returns a value.</summary>
    public static Task RunAsync<TInput, TOutput>(Func<TInput, ILambdaContext, Task<TOutput>> handler, ILambdaSerializer serializer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentNullException.ThrowIfNull(serializer);
        return RuntimeLoop.RunAsync(() => async (input, context, output) =>
        {
            var result = await handler(serializer.Deserialize<TInput>(input), context);
            serializer.Serialize(result, output);
        }, cancellationToken);
    }

    /// <summary>Serves a synchronous handler that returns a value.</summary>
    public static Task RunAsync<TInput, TOutput>(Func<TInput, ILambdaContext, TOutput> handler, ILambdaSerializer serializer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentNullException.ThrowIfNull(serializer);
        return RuntimeLoop.RunAsync(() => (input, context, output) =>
        {
            serializer.Serialize(handler(serializer.Deserialize<TInput>(input), context), output);
            return default;
        }, cancellationToken);
    }

    /// <summary>Serves an async handler without a result (the response is empty).</summary>
    public static Task RunAsync<TInput>(Func<TInput, ILambdaContext, Task> handler, ILambdaSerializer serializer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentNullException.ThrowIfNull(serializer);
        return RuntimeLoop.RunAsync(() => async (input, context, output) => await handler(serializer.Deserialize<TInput>(input), context), cancellationToken);
    }

    /// <summary>Serves a handler that works on the raw event and response bytes (no serializer).</summary>
    public static Task RunAsync(Func<Stream, ILambdaContext, Task<Stream>> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return RuntimeLoop.RunAsync(() => async (input, context, output) =>
        {
            var result = await handler(input, context);
            if (result is not null)
            {
                await using (result)
                {
                    await result.CopyToAsync(output, cancellationToken);
                }
            }
        }, cancellationToken);
    }
}
