namespace Lamina.Runtime;

/// <summary>
/// Turns the event bytes into the handler's input type and the handler's result into response bytes.
/// Class-library functions choose one with <see cref="LambdaSerializerAttribute"/>; executable functions pass one
/// to <see cref="LambdaRuntime"/>.
/// </summary>
public interface ILambdaSerializer
{
    /// <summary>Reads a <typeparamref name="T"/> from the event.</summary>
    T Deserialize<T>(Stream requestStream);

    /// <summary>Writes <paramref name="response"/> as the invocation's response.</summary>
    void Serialize<T>(T response, Stream responseStream);
}

/// <summary>
/// Names the <see cref="ILambdaSerializer"/> (a type with a public parameterless constructor) that the class-library
/// bootstrap uses for a handler: on the handler method, or for all handlers as
/// <c>[assembly: LambdaSerializer(typeof(DefaultLambdaJsonSerializer))]</c>. Without it, Lamina uses
/// <see cref="DefaultLambdaJsonSerializer"/>.
/// </summary>
[AttributeUsage(AttributeTargets.Assembly | AttributeTargets.Method, AllowMultiple = false)]
public sealed class LambdaSerializerAttribute : Attribute
{
    /// <summary>Names the serializer type.</summary>
    public LambdaSerializerAttribute(Type serializerType)
    {
        SerializerType = serializerType;
    }

    /// <summary>The <see cref="ILambdaSerializer"/> implementation.</summary>
    public Type SerializerType { get; set; }
}
