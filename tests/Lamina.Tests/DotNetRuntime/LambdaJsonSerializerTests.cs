using System.Text;
using System.Text.Json.Serialization;
using Lamina.Runtime;

namespace Lamina.Tests.DotNetRuntime;

public class LambdaJsonSerializerTests
{
    [Fact]
    public void DefaultSerializer_MatchesNamesCaseInsensitivelyAndOmitsNulls()
    {
        var serializer = new DefaultLambdaJsonSerializer();

        var order = serializer.Deserialize<SampleOrder>(Stream("""{"orderid":"o-1","QUANTITY":3}"""));
        var output = new MemoryStream();
        serializer.Serialize(order, output);

        Assert.Equal(("o-1", 3), (order.OrderId, order.Quantity));
        Assert.Equal("""{"OrderId":"o-1","Quantity":3}""", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public void SourceGeneratorSerializer_RoundTripsRegisteredTypes()
    {
        var serializer = new SourceGeneratorLambdaJsonSerializer<SampleJsonContext>();

        var order = serializer.Deserialize<SampleOrder>(Stream("""{"orderId":"o-2","quantity":1,"note":"n"}"""));
        var output = new MemoryStream();
        serializer.Serialize(order, output);

        Assert.Equal("""{"OrderId":"o-2","Quantity":1,"Note":"n"}""", Encoding.UTF8.GetString(output.ToArray()));
    }

    [Fact]
    public void SourceGeneratorSerializer_UnregisteredType_NamesTheAttributeToAdd()
    {
        var serializer = new SourceGeneratorLambdaJsonSerializer<SampleJsonContext>();

        var error = Assert.Throws<JsonSerializerException>(() => serializer.Serialize(new Unregistered(), new MemoryStream()));

        Assert.Contains("[JsonSerializable(typeof(Unregistered))]", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deserialize_EventOfAnotherShape_ThrowsJsonSerializerExceptionNamingTheType()
    {
        var serializer = new LambdaJsonSerializer(SampleJsonContext.Default);

        var error = Assert.Throws<JsonSerializerException>(() => serializer.Deserialize<SampleOrder>(Stream("[1,2]")));

        Assert.StartsWith("Error converting the Lambda event JSON payload to type Lamina.Tests.DotNetRuntime.SampleOrder", error.Message, StringComparison.Ordinal);
    }

    private static MemoryStream Stream(string json) => new(Encoding.UTF8.GetBytes(json));
}

public sealed class SampleOrder
{
    public string OrderId { get; set; } = "";

    public int Quantity { get; set; }

    public string? Note { get; set; }
}

public sealed class Unregistered;

[JsonSerializable(typeof(SampleOrder))]
public partial class SampleJsonContext : JsonSerializerContext;
