using System.Diagnostics.CodeAnalysis;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Lamina.Runtime;

/// <summary>
/// <see cref="ILambdaSerializer"/> on System.Text.Json with the options AWS's <c>DefaultLambdaJsonSerializer</c>
/// uses: property names as declared, matched case-insensitively on input; nulls left out on output.
/// Give it a <see cref="JsonSerializerContext"/> to use source-generated metadata (no reflection; trimming and
/// Native AOT safe), or <see cref="JsonSerializerOptions"/> of your own.
/// </summary>
public class LambdaJsonSerializer : ILambdaSerializer
{
    private readonly JsonSerializerOptions _options;

    /// <summary>Reflection-based serialization with the default options.</summary>
    [RequiresUnreferencedCode("Reflection-based JSON; use the JsonSerializerContext overload for trimmed or AOT functions.")]
    [RequiresDynamicCode("Reflection-based JSON; use the JsonSerializerContext overload for trimmed or AOT functions.")]
    public LambdaJsonSerializer()
        : this(CreateDefaultOptions(), reflection: true)
    {
    }

    /// <summary>Reflection-based serialization with the default options, changed by <paramref name="customize"/>.</summary>
    [RequiresUnreferencedCode("Reflection-based JSON; use the JsonSerializerContext overload for trimmed or AOT functions.")]
    [RequiresDynamicCode("Reflection-based JSON; use the JsonSerializerContext overload for trimmed or AOT functions.")]
    public LambdaJsonSerializer(Action<JsonSerializerOptions> customize)
        : this(Customized(customize), reflection: true)
    {
    }

    /// <summary>
    /// Source-generated serialization: types are looked up in <paramref name="context"/>'s resolver with the
    /// default options (or, if <paramref name="useContextOptions"/>, with the options the context was generated
    /// with, e.g. from <c>[JsonSourceGenerationOptions]</c>).
    /// </summary>
    public LambdaJsonSerializer(JsonSerializerContext context, bool useContextOptions = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (useContextOptions)
        {
            _options = context.Options;
        }
        else
        {
            _options = CreateDefaultOptions();
            _options.TypeInfoResolver = context;
        }
        _options.MakeReadOnly();
    }

    /// <summary>Uses <paramref name="options"/> as they are (set a <see cref="JsonSerializerOptions.TypeInfoResolver"/>).</summary>
    public LambdaJsonSerializer(JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    [RequiresUnreferencedCode("Reflection-based JSON.")]
    [RequiresDynamicCode("Reflection-based JSON.")]
    private LambdaJsonSerializer(JsonSerializerOptions options, bool reflection)
    {
        if (reflection)
        {
            options.TypeInfoResolver = new DefaultJsonTypeInfoResolver();
        }
        options.MakeReadOnly();
        _options = options;
    }

    /// <summary>The options in use (read-only).</summary>
    public JsonSerializerOptions Options => _options;

    /// <summary>AWS's defaults: case-insensitive property matching on input, nulls left out on output.</summary>
    public static JsonSerializerOptions CreateDefaultOptions() => new()
    {
        PropertyNameCaseInsensitive = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <inheritdoc />
    public T Deserialize<T>(Stream requestStream)
    {
        ArgumentNullException.ThrowIfNull(requestStream);
        try
        {
            return JsonSerializer.Deserialize(requestStream, TypeInfo<T>())!;
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            throw new JsonSerializerException($"Error converting the Lambda event JSON payload to type {typeof(T).FullName}: {e.Message}", e);
        }
    }

    /// <inheritdoc />
    public void Serialize<T>(T response, Stream responseStream)
    {
        ArgumentNullException.ThrowIfNull(responseStream);
        try
        {
            JsonSerializer.Serialize(responseStream, response, TypeInfo<T>());
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            throw new JsonSerializerException($"Error converting the response object of type {typeof(T).FullName} from the Lambda function to JSON: {e.Message}", e);
        }
    }

    private JsonTypeInfo<T> TypeInfo<T>()
    {
        try
        {
            return (JsonTypeInfo<T>)_options.GetTypeInfo(typeof(T));
        }
        catch (NotSupportedException e)
        {
            throw new JsonSerializerException($"Type {typeof(T).FullName} has no JSON metadata: add [JsonSerializable(typeof({typeof(T).Name}))] to the JsonSerializerContext given to the serializer.", e);
        }
    }

    [RequiresUnreferencedCode("Reflection-based JSON.")]
    [RequiresDynamicCode("Reflection-based JSON.")]
    private static JsonSerializerOptions Customized(Action<JsonSerializerOptions> customize)
    {
        ArgumentNullException.ThrowIfNull(customize);
        var options = CreateDefaultOptions();
        customize(options);
        return options;
    }
}

/// <summary>
/// The default serializer of class-library handlers: reflection-based System.Text.Json with AWS's options.
/// The name of AWS's equivalent, so <c>[assembly: LambdaSerializer(typeof(DefaultLambdaJsonSerializer))]</c> reads
/// the same.
/// </summary>
[RequiresUnreferencedCode("Reflection-based JSON; use SourceGeneratorLambdaJsonSerializer<TContext> for trimmed or AOT functions.")]
[RequiresDynamicCode("Reflection-based JSON; use SourceGeneratorLambdaJsonSerializer<TContext> for trimmed or AOT functions.")]
public class DefaultLambdaJsonSerializer : LambdaJsonSerializer
{
    /// <summary>AWS's options.</summary>
    public DefaultLambdaJsonSerializer()
    {
    }

    /// <summary>AWS's options, changed by <paramref name="customize"/>.</summary>
    public DefaultLambdaJsonSerializer(Action<JsonSerializerOptions> customize)
        : base(customize)
    {
    }
}

/// <summary>
/// Serializes with a source-generated <see cref="JsonSerializerContext"/>, for
/// <c>[assembly: LambdaSerializer(typeof(SourceGeneratorLambdaJsonSerializer&lt;MyJsonContext&gt;))]</c> or
/// <c>LambdaRuntime.RunAsync(handler, new SourceGeneratorLambdaJsonSerializer&lt;MyJsonContext&gt;())</c>.
/// The context is created with AWS's default options; every input and output type must be registered in it with
/// <c>[JsonSerializable(typeof(T))]</c>.
/// </summary>
/// <typeparam name="TContext">The source-generated context (it has a constructor taking <see cref="JsonSerializerOptions"/>).</typeparam>
public class SourceGeneratorLambdaJsonSerializer<
    [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TContext> : LambdaJsonSerializer
    where TContext : JsonSerializerContext
{
    /// <summary>Creates <typeparamref name="TContext"/> with AWS's default options.</summary>
    public SourceGeneratorLambdaJsonSerializer()
        : base(CreateContextOptions(null))
    {
    }

    /// <summary>Creates <typeparamref name="TContext"/> with AWS's default options, changed by <paramref name="customize"/>.</summary>
    public SourceGeneratorLambdaJsonSerializer(Action<JsonSerializerOptions> customize)
        : base(CreateContextOptions(customize))
    {
    }

    private static JsonSerializerOptions CreateContextOptions(Action<JsonSerializerOptions>? customize)
    {
        var options = CreateDefaultOptions();
        customize?.Invoke(options);
        // Generated contexts have a public (JsonSerializerOptions) constructor that binds the options to the context.
        var context = (TContext?)Activator.CreateInstance(typeof(TContext), options)
            ?? throw new InvalidOperationException($"Could not create {typeof(TContext).FullName}.");
        return context.Options;
    }
}

/// <summary>The event could not be read as the handler's input type, or the result could not be written as JSON.</summary>
public sealed class JsonSerializerException : Exception
{
    /// <summary>Creates the exception.</summary>
    public JsonSerializerException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
